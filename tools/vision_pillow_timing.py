#!/usr/bin/env python3
"""On-CPU time of ImageBind's own vision transform (Pillow + torchvision) on the frame that
`benches/preprocess_vision.rs` uses, for the side-by-side figure in docs/performance.md.

    python3 -m venv /tmp/visionvenv
    /tmp/visionvenv/bin/pip install pillow numpy torch torchvision
    /tmp/visionvenv/bin/python tools/vision_pillow_timing.py
    EDGEBIND_BENCH_CPU=1 cargo bench --bench preprocess_vision      # the Rust side

Measures like the Rust bench's CPU table: this thread's on-CPU time (time.thread_time_ns),
batches of >= 0.25 s, median and minimum per call over 15 batches, torch on one thread. Cases:
* `Resize(224, BICUBIC) -> CenterCrop(224) -> ToTensor() -> Normalize(CLIP)` on a PIL RGB image
  (imagebind/data.py L87-98, what `load_and_transform_vision_data` does after decoding);
* the same from the uint8 array (`Image.fromarray` included), the Rust bench's input;
* without torch (or with --no-torch): Pillow resize + crop, then NumPy `/255`, mean/std in f32;
* Pillow's decode of tests/fixtures/vision/rgb_640x480_q90_420.jpg (`convert("RGB")`).
"""
import argparse
import io
import os
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def bench_frame(width, height):
    """The bench's `frame()`: the same xorshift32 sequence, so both sides resize the same bytes."""
    s = 0x2545F491
    out = np.empty((height, width, 3), dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            disc = (x - 320) ** 2 + (y - 240) ** 2 < 120 * 120
            for c in range(3):
                s ^= (s << 13) & 0xFFFFFFFF
                s ^= s >> 17
                s ^= (s << 5) & 0xFFFFFFFF
                base = 230 if disc else (x * 3 + y + c * 70) % 256
                out[y, x, c] = min(base + (s & 15), 255)
    return out


def cpu_time_per_call(fn, batches):
    fn()
    per_call = []
    for _ in range(batches):
        calls = 0
        t0 = time.thread_time_ns()
        t1 = t0
        while t1 - t0 < 250_000_000:
            for _ in range(16):
                fn()
            calls += 16
            t1 = time.thread_time_ns()
        per_call.append((t1 - t0) / calls / 1e6)
    per_call.sort()
    return per_call[len(per_call) // 2], per_call[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=15)
    ap.add_argument("--no-torch", action="store_true", help="only the Pillow + NumPy variant")
    args = ap.parse_args()
    arr = bench_frame(640, 480)
    img = Image.fromarray(arr, "RGB")
    mean = np.array(MEAN, dtype=np.float32)[:, None, None]
    std = np.array(STD, dtype=np.float32)[:, None, None]

    def pillow_numpy(im):
        r = im.resize((298, 224), Image.Resampling.BICUBIC).crop((37, 0, 261, 224))
        t = np.asarray(r).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        return (t - mean) / std

    cases = []
    torch_note = "not used (--no-torch)"
    if not args.no_torch:
        try:
            import torch
            import torchvision
            from torchvision import transforms
            torch.set_num_threads(1)
            tf = transforms.Compose([
                transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(mean=MEAN, std=STD),
            ])
            ref = tf(img).numpy()
            assert np.array_equal(ref, pillow_numpy(img)), "Pillow+NumPy variant differs"
            cases += [("imagebind_transform_pil_640x480", lambda: tf(img)),
                      ("imagebind_transform_from_array", lambda: tf(Image.fromarray(arr, "RGB")))]
            torch_note = f"torch {torch.__version__}, torchvision {torchvision.__version__}, 1 thread"
        except ImportError as e:
            torch_note = f"not installed ({e.name}); Pillow + NumPy only"
    cases.append(("pillow_numpy_640x480", lambda: pillow_numpy(img)))
    with open(os.path.join(REPO, "tests/fixtures/vision/rgb_640x480_q90_420.jpg"), "rb") as f:
        jpeg = f.read()
    cases.append(("pillow_jpeg_640x480_decode",
                  lambda: Image.open(io.BytesIO(jpeg)).convert("RGB").load()))

    load = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else "?"
    print(f"Pillow {Image.__version__}, numpy {np.__version__}, torch: {torch_note}")
    print(f"on-CPU time per call, {args.batches} batches of >= 0.25 s CPU, loadavg {load}")
    print(f"{'case':<40} {'median ms':>12} {'min ms':>12}")
    for name, fn in cases:
        med, lo = cpu_time_per_call(fn, args.batches)
        print(f"{name:<40} {med:>12.3f} {lo:>12.3f}")


if __name__ == "__main__":
    main()
