#!/usr/bin/env python3
"""Which ONNX Runtime CPU session settings matter for edgebind's encoders (#19).

Measures, on a model set (real-size random-weight encoders from
`tools/export_imagebind.py --random-init`, or their int8 set from `tools/quantize_int8.py`):

1. one encoder alone, batch 1: graph optimisation level (basic / extended / all), intra-op
   threads (1 / 2), thread spinning (on / off) and the CPU memory arena (on / off), each in a
   fresh process so that its peak RSS is its own;
2. every encoder at once, one thread each, as the daemon runs them (one worker per modality):
   windows per second per encoder with 1 or 2 intra-op threads per session and spinning on or off
   -- what happens when several encoders share two cores.

Prints Markdown tables (docs/inference.md keeps the figures). Uses the onnxruntime Python
package: the same engine as the daemon's libonnxruntime (the version is printed).

    python tools/ort_settings_study.py /tmp/imagebind_random --seconds 8
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

MODALITIES = ["imu", "audio", "depth", "thermal"]


def example_input(session):
    """A random input of the encoder's declared shape (batch 1)."""
    inp = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) or d <= 0 else d for d in inp.shape]
    rng = np.random.default_rng(0)
    return {inp.name: rng.standard_normal(shape).astype(np.float32)}


def make_session(path, opt, threads, spinning, arena):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[opt]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = arena
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def one(args):
    """Child process: one encoder, one setting; prints a JSON line."""
    path, opt, threads, spinning, arena, seconds = args
    t0 = time.perf_counter()
    s = make_session(path, opt, int(threads), spinning == "1", arena == "1")
    load_s = time.perf_counter() - t0
    feed = example_input(s)
    s.run(None, feed)
    times = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    while time.perf_counter() - wall0 < float(seconds) or len(times) < 5:
        t = time.perf_counter()
        s.run(None, feed)
        times.append((time.perf_counter() - t) * 1000)
    cpu_per_run_ms = (time.process_time() - cpu0) * 1000 / len(times)
    times.sort()
    print(json.dumps({
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "cpu_per_run_ms": cpu_per_run_ms,
        "runs": len(times),
        "load_s": load_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def alone(models, seconds):
    settings = [
        ("all", 1, "1", "1"),
        ("extended", 1, "1", "1"),
        ("basic", 1, "1", "1"),
        ("all", 2, "1", "1"),
        ("all", 2, "0", "1"),
        ("all", 1, "1", "0"),
    ]
    print("\n### One encoder alone, batch 1 (median / p90 ms, CPU ms per run, peak RSS)\n")
    print("| encoder | opt | intra | spin | arena | median ms | p90 ms | CPU ms/run | RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in MODALITIES:
        path = os.path.join(models, f"{m}.onnx")
        if not os.path.exists(path):
            continue
        for opt, threads, spin, arena in settings:
            out = subprocess.run(
                [sys.executable, __file__, "--child", path, opt, str(threads), spin, arena,
                 str(seconds)],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"| {m} | {opt} | {threads} | {'on' if spin == '1' else 'off'} | "
                  f"{'on' if arena == '1' else 'off'} | {r['median_ms']:.0f} | {r['p90_ms']:.0f} | "
                  f"{r['cpu_per_run_ms']:.0f} | {r['peak_rss_mib']:.0f} |", flush=True)


def together(models, seconds):
    print("\n### Every encoder at once, each in its own thread as edgebind's workers "
          "(windows/s per encoder, back to back)\n")
    print("| intra per session | spin | " + " | ".join(MODALITIES) + " | process CPU % |")
    print("|---|---|" + "---|" * len(MODALITIES) + "---|")
    for threads, spinning in [(1, True), (1, False), (2, True), (2, False)]:
        sessions = {}
        for m in MODALITIES:
            path = os.path.join(models, f"{m}.onnx")
            if os.path.exists(path):
                sessions[m] = make_session(path, "all", threads, spinning, True)
        feeds = {m: example_input(s) for m, s in sessions.items()}
        for m, s in sessions.items():
            s.run(None, feeds[m])
        counts = {m: 0 for m in sessions}
        stop = threading.Event()

        def loop(m):
            while not stop.is_set():
                sessions[m].run(None, feeds[m])
                counts[m] += 1

        workers = [threading.Thread(target=loop, args=(m,)) for m in sessions]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for w in workers:
            w.start()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        wall = time.perf_counter() - wall0
        cpu = (time.process_time() - cpu0) / wall * 100
        rates = " | ".join(f"{counts[m] / wall:.2f}" if m in counts else "-" for m in MODALITIES)
        print(f"| {threads} | {'on' if spinning else 'off'} | {rates} | {cpu:.0f} |", flush=True)
        del sessions


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        one(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", help="model set directory (imu.onnx, audio.onnx, ...)")
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring time per setting")
    args = ap.parse_args()
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, models {args.models}")
    alone(args.models, args.seconds)
    together(args.models, 2 * args.seconds)


if __name__ == "__main__":
    main()
