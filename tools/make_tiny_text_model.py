#!/usr/bin/env python3
"""Build tests/fixtures/models/text_tiny.onnx: a tiny stand-in with the text encoder's contract
(input `text` int64 [batch, 77], output `embedding` float32 [batch, 1024]; NOT ImageBind), and
text_tiny_ref_output.npy, onnxruntime's output for refdata's token ids (text_tokens_int64.npy).

The graph: ids / 49408 -> MatMul [77, 32] -> Tanh -> MatMul [32, 1024] -> L2 normalise x 1/0.07,
so every id position changes the result. Deterministic (fixed seed): re-running gives the same
bytes. Needs numpy, onnx, onnxruntime.

Usage: tools/make_tiny_text_model.py [--fixtures tests/fixtures] [--refdata DIR]
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build():
    rng = np.random.default_rng(7007)
    w1 = (rng.standard_normal((77, 32)) * 3.0).astype(np.float32)
    w2 = rng.standard_normal((32, 1024)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (w1, "w1"), (w2, "w2"), (np.array(1 / 49408, np.float32), "inv_vocab"),
        (np.array(1e-12, np.float32), "eps"), (np.array(1 / 0.07, np.float32), "scale"))]
    nodes = [
        helper.make_node("Cast", ["text"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "inv_vocab"], ["x"]),
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Tanh", ["h0"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["v"]),
        helper.make_node("ReduceL2", ["v"], ["n0"], axes=[-1], keepdims=1),
        helper.make_node("Max", ["n0", "eps"], ["n"]),
        helper.make_node("Div", ["v", "n"], ["u"]),
        helper.make_node("Mul", ["u", "scale"], ["embedding"]),
    ]
    g = helper.make_graph(
        nodes, "edgebind_tiny_text",
        [helper.make_tensor_value_info("text", TensorProto.INT64, ["batch", 77])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 1024])],
        initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="edgebind tools/make_tiny_text_model.py",
                          doc_string="edgebind tiny text stand-in (NOT ImageBind)")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--refdata", default=os.environ.get(
        "EDGEBIND_REFDATA", os.path.join(REPO, "..", "shared", "refdata")))
    args = ap.parse_args()
    import onnxruntime as ort
    path = os.path.join(args.fixtures, "models", "text_tiny.onnx")
    onnx.save(build(), path)
    ids = np.load(os.path.join(args.refdata, "text", "text_tokens_int64.npy"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    out = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(
        ["embedding"], {"text": ids})[0]
    assert out.shape == (len(ids), 1024) and np.isfinite(out).all()
    np.save(os.path.join(args.fixtures, "models", "text_tiny_ref_output.npy"), out)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and text_tiny_ref_output.npy {out.shape}")


if __name__ == "__main__":
    main()
