#!/usr/bin/env python3
"""Inference call overhead: ONNX Runtime's Python API vs edgebind's encoder call on the same
model, input and thread count.

Python side: `InferenceSession.run(None, {name: x})` per call, timed like the Rust bench
(benches/ort_overhead.rs: `Encoder::run`, input view -> ORT -> checks -> owned output). The two
alternate in rounds (Python, Rust, Python, Rust ...), so slow drifts of a shared machine hit
both; the table reports, per side, the median of the per-round median call times and
Rust / Python.

    cargo bench --bench ort_overhead --no-run      # prints the bench binary's path
    python tools/ort_overhead.py --rust-bin target/release/deps/ort_overhead-HASH \\
        --model imu=models/tiny/imu.onnx --model audio=/tmp/imagebind_random/audio.onnx \\
        --threads 1 --iters 100 --rounds 3

Needs numpy and onnxruntime (the same version as .ort/lib: compare like with like). The
Rust binary loads the library from .ort/lib or ORT_DYLIB_PATH.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

SHAPES = {"imu": [6, 2000], "audio": [1, 1, 128, 204], "depth": [1, 224, 224],
          "thermal": [1, 224, 224]}


def make_input(modality, batch):
    if modality == "text":
        ids = np.zeros((batch, 77), np.int64)
        ids[:, 0], ids[:, 1:6], ids[:, 6] = 49406, np.arange(321, 326), 49407
        return ids
    shape = [batch] + SHAPES[modality]
    # Same values as the Rust bench: sin(k * 0.001), k = 1, 2, ... in C order.
    k = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64)
    return np.sin(k * 0.001).astype(np.float32).reshape(shape)


def python_times(sess, name, x, iters, warmup):
    for _ in range(warmup):
        sess.run(None, {name: x})
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {name: x})
        out.append((time.perf_counter() - t) * 1e3)
    return out


def rust_times(binary, modality, path, threads, iters, warmup, batch):
    cmd = [binary, "--bench", "--modality", modality, "--model", path, "--threads", str(threads),
           "--iters", str(iters), "--warmup", str(warmup), "--batch", str(batch), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="MODALITY=PATH (repeat)")
    ap.add_argument("--rust-bin", help="built benches/ort_overhead binary")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=100, help="timed calls per round")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()

    print(f"onnxruntime {ort.__version__} (Python) | threads {args.threads} | batch {args.batch} "
          f"| {args.rounds} rounds x {args.iters} calls per side")
    print("| model | size MB | Python median ms | Rust median ms | Rust / Python |")
    print("|---|---:|---:|---:|---:|")
    for spec in args.model:
        modality, path = spec.split("=", 1)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        x = make_input(modality, args.batch)
        py, rs = [], []
        for _ in range(args.rounds):
            py.append(statistics.median(python_times(sess, name, x, args.iters, args.warmup)))
            if args.rust_bin:
                r = rust_times(args.rust_bin, modality, path, args.threads, args.iters,
                               args.warmup, args.batch)
                rs.append(r["median_ms"])
        # Each side: the median of its per-round medians.
        py_med = statistics.median(py)
        rs_med = statistics.median(rs) if rs else float("nan")
        size = os.path.getsize(path) / 1e6
        print(f"| {modality} ({os.path.basename(path)}) | {size:.1f} | {py_med:.3f} | "
              f"{rs_med:.3f} | {rs_med / py_med:.3f} |")
        del sess


if __name__ == "__main__":
    main()
