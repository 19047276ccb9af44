#!/usr/bin/env python3
"""Make an int8 model set from an fp32 one: ONNX Runtime dynamic quantization of the MatMul/Gemm
weights of every sensor encoder, written as its own model set, with fp32 reference outputs for
the parity check and the accepted tolerance recorded in its manifest.

    python tools/quantize_int8.py --src models/imagebind --out models/imagebind-int8
    python tools/quantize_int8.py --src models/tiny --out models/tiny-int8 --name edgebind-tiny-int8

Used by `tools/export_imagebind.py --quantize int8` and `tools/make_tiny_models.py --int8`.

What it does, per encoder of the source set's `models`:
1. `onnxruntime.quantization.quantize_dynamic`: int8 weights (QInt8) for MatMul and Gemm,
   activations quantized per batch at run time (uint8); everything else stays fp32. With
   `--per-channel auto` (default) both per-tensor and per-channel weight scales are tried and
   the one closer to fp32 kept (per-channel helps when weight columns differ in range).
2. Reference inputs: the source entry's own reference input (if any) and the preprocessed
   inputs of `--refdata` (SPEC.md's reference tensors: IMU windows, audio fbank clips, depth,
   thermal and vision frames), one row each. Their reference outputs are the **fp32** model's
   (ONNX Runtime CPU), so the parity check compares the int8 model with fp32, never with itself.
3. Measures the int8 output's cosine to fp32 per row; the lowest is written as
   `reference.measured_min_cosine`, and `reference.min_cosine` (the threshold the daemon's
   parity check uses for this model instead of runtime.parity.min_cosine) is `--min-cosine`.
   A model whose measured cosine is below `--min-cosine` fails the tool (nothing is written for
   it): accept a lower fidelity explicitly or keep fp32.
4. Copies the concept bank (and the text encoder with its vocabulary, unquantized: the bank and
   on-device concept sets stay fp32) and writes `manifest.json` with `precision: "int8"` and the
   quantization settings per model.

Needs numpy, onnx, onnxruntime (no torch).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENSOR_MODALITIES = ["imu", "audio", "depth", "thermal", "vision"]
OP_TYPES = ["MatMul", "Gemm"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def refdata_inputs(modality, refdata):
    """SPEC.md's preprocessed reference tensors of `modality`, one model input each (no batch)."""
    def load(rel):
        p = os.path.join(refdata, rel)
        return np.load(p).astype(np.float32) if os.path.exists(p) else None

    rows = []
    if modality == "imu":
        rows = [load("imu/imu_400hz_5s_6x2000_f32.npy"), load("imu/imu_200hz_to_6x2000_f32.npy")]
    elif modality == "audio":
        for name in ("window_2s_44k1_stereo", "speech_44k1_stereo_5s", "chirp_noise_16k_mono_9s5",
                     "short_16k_mono_1s2"):
            a = load(f"audio/{name}.out.npy")              # [1, 3, 1, 128, 204]
            rows.append(None if a is None else a[0, :1])   # one clip, as the daemon's default
    elif modality == "depth":
        rows = [load("depth/depth_out_1x224x224_f32.npy")]
    elif modality == "thermal":
        rows = [load("thermal/thermal_y16_out_1x224x224_f32.npy"),
                load("thermal/thermal_u8_out_1x224x224_f32.npy")]
    elif modality == "vision":
        rows = [load(f"vision/{n}_out_3x224x224_f32.npy")
                for n in ("rgb_224x224", "rgb_640x480", "rgb_160x120", "yuyv_640x480")]
    return [r for r in rows if r is not None]


def session(path, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run(path, name, x, threads):
    return session(path, threads).run(["embedding"], {name: x})[0]


def cosines(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)


def quantize(src, dst, per_channel):
    import logging
    from onnxruntime.quantization import QuantType, quantize_dynamic
    # Its advice to run shape-inference pre-processing first is for static quantization.
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                     op_types_to_quantize=OP_TYPES, use_external_data_format=False)


def reference_rows(entry, src_dir, modality, refdata, max_rows):
    rows = []
    ref = entry.get("reference")
    if ref:
        x = np.load(os.path.join(src_dir, ref["input"])).astype(np.float32)
        rows.extend(list(x))
    for r in refdata_inputs(modality, refdata):
        if not rows or r.shape == rows[0].shape:
            rows.append(r)
    if not rows:
        sys.exit(f"{modality}: no reference input (none in the source manifest, none in "
                 f"{refdata}); pass --refdata")
    return np.stack(rows[:max_rows], 0)


def quantize_entry(modality, entry, args, out_dir):
    """Quantizes one encoder into out_dir; returns its manifest entry and a report line."""
    # An encoder with external data (vision) is read whole by quantize_dynamic; its int8 weights
    # (~0.63 GB for ViT-H) fit under protobuf's 2 GB, so the quantized graph is one file.
    src_path = os.path.join(args.src, entry["file"])
    name = entry["input"]
    x = reference_rows(entry, args.src, modality, args.refdata, args.max_rows)
    fp32_out = run(src_path, name, x, args.threads)
    modes = {"auto": [False, True], "on": [True], "off": [False]}[args.per_channel]
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for per_channel in modes:
            cand = os.path.join(tmp, f"{modality}-{'pc' if per_channel else 'pt'}.onnx")
            quantize(src_path, cand, per_channel)
            cos = cosines(fp32_out, run(cand, name, x, args.threads))
            if best is None or cos.min() > best[1].min():
                best = (per_channel, cos, cand)
        per_channel, cos, cand = best
        measured = float(cos.min())
        if measured < args.min_cosine:
            sys.exit(f"{modality}: int8 cosine to fp32 is {measured:.4f} on its reference inputs, "
                     f"below --min-cosine {args.min_cosine}; keep this encoder fp32 or accept "
                     f"a lower --min-cosine")
        dst = os.path.join(out_dir, f"{modality}.onnx")
        shutil.copyfile(cand, dst)
    files = {}
    for kind, arr in (("input", x), ("output", fp32_out)):
        fn = f"{modality}_reference_{kind}{'_fp32' if kind == 'output' else ''}.npy"
        np.save(os.path.join(out_dir, fn), np.ascontiguousarray(arr))
        files[kind] = fn
    new = {
        "file": f"{modality}.onnx", "sha256": sha256(dst),
        "input": name, "output": entry["output"], "precision": "int8",
        "quantization": {
            "method": "onnxruntime quantize_dynamic, QInt8 weights of MatMul and Gemm",
            "per_channel": per_channel,
            "source_sha256": entry["sha256"],
        },
        "reference": {
            "input": files["input"], "input_sha256": sha256(os.path.join(out_dir, files["input"])),
            "output": files["output"],
            "output_sha256": sha256(os.path.join(out_dir, files["output"])),
            "min_cosine": args.min_cosine,
            "measured_min_cosine": round(measured, 6),
        },
    }
    src_bytes = os.path.getsize(src_path) + sum(
        os.path.getsize(os.path.join(args.src, d["file"])) for d in entry.get("external_data", []))
    line = (f"{modality:8s} {src_bytes / 1e6:9.1f} MB -> {os.path.getsize(dst) / 1e6:8.1f} MB "
            f"per_channel={str(per_channel):5s} cosine to fp32 on {len(cos)} inputs: "
            f"min {cos.min():.6f} mean {cos.mean():.6f}")
    return new, line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, help="fp32 model set (folder with manifest.json)")
    ap.add_argument("--out", required=True, help="folder of the int8 set (created)")
    ap.add_argument("--name", help="model-set name (default: <source name>-int8)")
    ap.add_argument("--modalities", help="comma-separated (default: every sensor encoder)")
    ap.add_argument("--min-cosine", type=float, default=0.98,
                    help="accepted cosine to fp32, recorded as the parity threshold (default 0.98)")
    ap.add_argument("--per-channel", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--refdata", default=os.environ.get("EDGEBIND_REFDATA")
                    or os.path.join(REPO, "..", "shared", "refdata"))
    ap.add_argument("--max-rows", type=int, default=8,
                    help="most reference inputs per encoder (each is run at every start)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not -1.0 <= args.min_cosine <= 1.0:
        sys.exit("--min-cosine must be within [-1, 1]")
    with open(os.path.join(args.src, "manifest.json"), encoding="utf-8") as f:
        src = json.load(f)
    wanted = (args.modalities.split(",") if args.modalities
              else [m for m in SENSOR_MODALITIES if m in src["models"]])
    os.makedirs(args.out, exist_ok=True)
    models, lines = {}, []
    for m in wanted:
        entry = src["models"].get(m)
        if entry is None:
            sys.exit(f"{m}: not in {args.src}/manifest.json")
        if entry.get("precision", "fp32") != "fp32":
            sys.exit(f"{m}: the source encoder is {entry['precision']}, not fp32")
        models[m], line = quantize_entry(m, entry, args, args.out)
        lines.append(line)
        print(line, flush=True)
    manifest = {
        "format": 1,
        "name": args.name or f"{src['name']}-int8",
        "licence": src["licence"],
        "embedding_dim": src["embedding_dim"],
        "models": models,
        "concepts": src["concepts"],
    }
    copies = [src["concepts"]["labels"], src["concepts"]["embeddings"]]
    if src.get("text"):
        manifest["text"] = src["text"]
        copies += [src["text"]["file"], src["text"]["tokenizer"]]
    for fn in copies:
        shutil.copyfile(os.path.join(args.src, fn), os.path.join(args.out, fn))
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {os.path.join(args.out, 'manifest.json')}")
    return lines


if __name__ == "__main__":
    main()
