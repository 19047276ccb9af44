#!/usr/bin/env python3
"""Build tests/fixtures/models/imu_hang.onnx: an IMU encoder with ImageBind's contract
([B, 6, 2000] -> [B, 1024]) that never finishes on real data, for the watchdog test (a worker
that hangs for real, instead of fault injection in the daemon).

Its run time is proportional to the input: a Loop runs max(|x|) * 1e12 iterations. The daemon
warms each model up on zeros, where the loop runs 0 times, so the daemon starts and reports
READY; the first real window (non-zero motion) then keeps the worker busy for years. The
embedding is the window's per-channel mean padded to 1024 values, plus the loop's count (0 on
zeros), so the loop cannot be optimised away. The file stays ~1 KB. Deterministic: re-running
gives a byte-identical file. (tools/make_slow_model.py makes one that is only slow.)

Usage: tools/make_hanging_model.py [--out tests/fixtures/models/imu_hang.onnx]
Needs numpy and onnx (>= 1.14); onnxruntime, if installed, checks that zeros run at once.
"""
import argparse
import os
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 1024
ITERATIONS_PER_UNIT = 1e12


def body():
    """One loop iteration: count += 1 (the condition stays true)."""
    one = numpy_helper.from_array(np.asarray(1.0, dtype=np.float32), "one")
    nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
        helper.make_node("Add", ["count_in", "one"], ["count_out"], name="count"),
    ]
    return helper.make_graph(
        nodes, "spin",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("count_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("count_out", TensorProto.FLOAT, [])],
        initializer=[one])


def build():
    inits = [
        numpy_helper.from_array(np.asarray(ITERATIONS_PER_UNIT, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.asarray(True), "true"),
        numpy_helper.from_array(np.asarray(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.asarray([2], dtype=np.int64), "time_axis"),
        numpy_helper.from_array(np.asarray([0, 0, 0, DIM - 6], dtype=np.int64), "pads"),
    ]
    nodes = [
        helper.make_node("Abs", ["imu"], ["magnitude"], name="abs"),
        helper.make_node("ReduceMax", ["magnitude"], ["peak"], keepdims=0, name="peak"),
        helper.make_node("Mul", ["peak", "scale"], ["trips_f"], name="trips_f"),
        helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64, name="trips"),
        helper.make_node("Loop", ["trips", "true", "zero"], ["count"], body=body(), name="spin"),
        helper.make_node("ReduceMean", ["imu", "time_axis"], ["mean"], keepdims=0, name="mean"),
        helper.make_node("Pad", ["mean", "pads"], ["padded"], mode="constant", name="pad"),
        helper.make_node("Add", ["padded", "count"], ["embedding"], name="embedding"),
    ]
    graph = helper.make_graph(
        nodes, "edgebind_hanging_imu",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, ["batch", 6, 2000])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="edgebind tools/make_hanging_model.py",
                              producer_version="1",
                              doc_string="IMU stand-in that hangs on non-zero input (watchdog test)")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "models",
                                                   "imu_hang.onnx"))
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(build().SerializeToString(deterministic=True))
    print(f"{args.out}: {os.path.getsize(args.out)} bytes")
    try:
        import onnxruntime as ort
    except ImportError:
        return
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(args.out, opts, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    y = sess.run(None, {"imu": np.zeros((1, 6, 2000), dtype=np.float32)})[0]
    assert y.shape == (1, DIM) and not y.any()
    print(f"zeros: {(time.perf_counter() - t0) * 1e3:.1f} ms (no iteration)")
    x = np.full((1, 6, 2000), 1e-9, dtype=np.float32)  # 1000 iterations
    t0 = time.perf_counter()
    y = sess.run(None, {"imu": x})[0]
    ms = (time.perf_counter() - t0) * 1e3
    print(f"1e-9 (1000 iterations): {ms:.1f} ms; a real window (|x| ~ 1-10) runs ~1e12 times longer")


if __name__ == "__main__":
    main()
