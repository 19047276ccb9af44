#!/usr/bin/env python3
"""Build tests/fixtures/models/imu_slow.onnx: an IMU encoder with ImageBind's contract
([B, 6, 2000] -> [B, 1024]) that is deliberately slow, for the inference backlog test.

No weights: the window is reshaped to [100, 120], tiled to [1000, 1200] and multiplied by its own
transpose (about 2.4 GFLOP per window, ~0.1-0.5 s on one CPU thread), then averaged and padded
to 1024 values. The file stays ~1 KB. Deterministic: re-running gives a byte-identical file.

Usage: tools/make_slow_model.py [--out tests/fixtures/models/imu_slow.onnx]
Needs numpy and onnx (>= 1.14); onnxruntime, if installed, times one run.
"""
import argparse
import os
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 1024
TILE = 10  # [100, 120] -> [1000, 1200]


def build():
    def const(name, values):
        return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)

    inits = [const("shape", [0, 100, 120]), const("tiles", [1, TILE, TILE]),
             const("pads", [0, 0, 0, DIM - 100 * TILE])]
    nodes = [
        helper.make_node("Reshape", ["imu", "shape"], ["x"], name="reshape"),
        helper.make_node("Tile", ["x", "tiles"], ["t"], name="tile"),
        helper.make_node("Transpose", ["t"], ["tt"], perm=[0, 2, 1], name="transpose"),
        helper.make_node("MatMul", ["t", "tt"], ["gram"], name="gram"),
        helper.make_node("ReduceMean", ["gram"], ["mean"], axes=[2], keepdims=0, name="mean"),
        helper.make_node("Pad", ["mean", "pads"], ["embedding"], mode="constant", name="pad"),
    ]
    graph = helper.make_graph(
        nodes, "edgebind_slow_imu",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, ["batch", 6, 2000])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgebind tools/make_slow_model.py",
                              producer_version="1",
                              doc_string="deliberately slow IMU stand-in for the backlog test")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "models",
                                                   "imu_slow.onnx"))
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
    x = np.random.default_rng(0).standard_normal((1, 6, 2000)).astype(np.float32)
    sess.run(None, {"imu": x})
    t0 = time.perf_counter()
    y = sess.run(None, {"imu": x})[0]
    assert y.shape == (1, DIM) and np.isfinite(y).all()
    print(f"one window: {(time.perf_counter() - t0) * 1e3:.0f} ms on one thread (noisy)")


if __name__ == "__main__":
    main()
