#!/usr/bin/env python3
"""Build tests/fixtures/models/imu_slow.onnx: an IMU encoder with ImageBind's contract
([B, 6, 2000] -> [B, 1024]) that is deliberately slow, for the inference backlog test.

No weights: the window is reshaped to [100, 120], tiled to [1000, 1200] and multiplied by its own
transpose (about 2.4 GFLOP per window, ~0.1-0.5 s on one CPU thread), then averaged and padded
to 1024 values. The file stays ~1 KB. Deterministic: re-running gives a byte-identical file.

With --load-seconds N (tests/fixtures/models/imu_slow_load.onnx, N = 600): the product runs in
an ONNX Loop N x 50 times per window, so the warm-up run the daemon makes while it loads the
model lasts at least N seconds on a CPU doing under 120 GFLOP/s (any Jetson, and CI), for the
test that SIGTERM during a slow model load stops the daemon at once. Still ~1 KB, deterministic.

Usage: tools/make_slow_model.py [--load-seconds N] [--out PATH]
Needs numpy and onnx (>= 1.14); onnxruntime, if installed, times one run (not with
--load-seconds: that run lasts the N seconds).
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


# Products per second of the slowest-assumed-fast CPU: 2.4 GFLOP each at 120 GFLOP/s.
PRODUCTS_PER_SECOND = 50


def repeated_gram(trips):
    """Nodes computing `mean` as the sum of `trips` identical Gram-row means, in an ONNX Loop
    (the body reads `t` and `tt` from the outer graph; the running sum is the carried value)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="cond"),
            helper.make_node("MatMul", ["t", "tt"], ["gram"], name="gram"),
            helper.make_node("ReduceMean", ["gram"], ["mean"], axes=[2], keepdims=0,
                             name="mean"),
            helper.make_node("Add", ["acc_in", "mean"], ["acc_out"], name="acc"),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["batch", 100 * TILE])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["batch", 100 * TILE])],
    )
    trips_init = numpy_helper.from_array(np.asarray(trips, dtype=np.int64), "trips")
    true_init = numpy_helper.from_array(np.asarray(True), "true")
    return [trips_init, true_init], [
        # A zero running sum shaped like one Gram row mean: [batch, 1000].
        helper.make_node("ReduceMean", ["t"], ["row"], axes=[2], keepdims=0, name="row"),
        helper.make_node("Sub", ["row", "row"], ["zero"], name="zero"),
        helper.make_node("Loop", ["trips", "true", "zero"], ["mean"], body=body, name="loop"),
    ]


def build(trips=None):
    def const(name, values):
        return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)

    inits = [const("shape", [0, 100, 120]), const("tiles", [1, TILE, TILE]),
             const("pads", [0, 0, 0, DIM - 100 * TILE])]
    nodes = [
        helper.make_node("Reshape", ["imu", "shape"], ["x"], name="reshape"),
        helper.make_node("Tile", ["x", "tiles"], ["t"], name="tile"),
        helper.make_node("Transpose", ["t"], ["tt"], perm=[0, 2, 1], name="transpose"),
    ]
    if trips is None:
        nodes += [
            helper.make_node("MatMul", ["t", "tt"], ["gram"], name="gram"),
            helper.make_node("ReduceMean", ["gram"], ["mean"], axes=[2], keepdims=0,
                             name="mean"),
        ]
    else:
        loop_inits, loop_nodes = repeated_gram(trips)
        inits += loop_inits
        nodes += loop_nodes
    nodes.append(
        helper.make_node("Pad", ["mean", "pads"], ["embedding"], mode="constant", name="pad"))
    graph = helper.make_graph(
        nodes, "edgebind_slow_imu" if trips is None else "edgebind_slow_load_imu",
        [helper.make_tensor_value_info("imu", TensorProto.FLOAT, ["batch", 6, 2000])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgebind tools/make_slow_model.py",
                              producer_version="1",
                              doc_string="deliberately slow IMU stand-in for the backlog test"
                              if trips is None else
                              "IMU stand-in whose every run lasts long, for the slow-load test")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--load-seconds", type=int, default=None,
                    help="make the warm-up run last at least this long (an ONNX Loop)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    name = "imu_slow.onnx" if args.load_seconds is None else "imu_slow_load.onnx"
    out = args.out or os.path.join(REPO, "tests", "fixtures", "models", name)
    trips = None if args.load_seconds is None else args.load_seconds * PRODUCTS_PER_SECOND
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(build(trips).SerializeToString(deterministic=True))
    print(f"{out}: {os.path.getsize(out)} bytes")
    if trips is not None:
        return
    args.out = out
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
