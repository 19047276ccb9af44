#!/usr/bin/env python3
"""Build the `edgebind-tiny` model set: tiny, deterministic stand-ins for the ImageBind encoders.

Each model has exactly ImageBind's ONNX I/O contract (SPEC.md section 1) but no learned weights:
a few hand-made signal features (see `build_*` below) pick a blend of fixed concept directions,
plus a small, bounded, input-dependent random perturbation so that the output depends on the
exact tensor (a preprocessing bug changes the numbers, not only the label). Simple synthetic
signals therefore land on known concepts of the bundled concept bank, which lets integration
tests assert labels end to end, and a mis-wired pipeline (wrong channel order, missing
normalisation, flipped mel axis, inverted thermal polarity ...) lands on a different label.

Outputs (all deterministic: fixed seeds, no timestamps; re-running gives byte-identical files):
  <out>/imu.onnx audio.onnx depth.onnx thermal.onnx vision.onnx concepts.txt concepts.npy
      manifest.json
  <out>/<modality>_reference_input.npy, <modality>_reference_output.npy: one synthetic input per
      encoder and its output from ONNX Runtime's CPU provider (the daemon's parity check)
  <fixtures>/models/imu_wrong_shape.onnx  imu_ref_input.npy  imu_ref_output.npy

Usage: tools/make_tiny_models.py [--out models/tiny] [--fixtures tests/fixtures] [--refdata DIR]
Defaults are relative to the repository root (the folder above tools/), not the working directory.
The reference IMU tensor comes from --refdata, else $EDGEBIND_REFDATA, else <repo>/../shared/refdata.
Needs numpy, onnx (>= 1.14) and onnxruntime (for the verification table; it must pass).
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPSET = 17        # ReduceMean/ReduceMax/ReduceL2 still take `axes` as an attribute here
IR_VERSION = 8    # loadable by ONNX Runtime >= 1.10 (ORT 1.17+ is what edgebind supports)
DIM = 1024        # ImageBind out_embed_dim
MIN_MARGIN = 0.2  # required cosine gap between the intended concept and the runner-up
MEL_MEAN, MEL_STD = -4.268, 9.138  # ImageBind audio Normalize (data.py L159-160)

# --------------------------------------------------------------------------- concept bank
# Signal concepts, grouped by the modality whose tiny encoder produces them.
IMU_REST, IMU_SHAKE, IMU_FALL = "device at rest", "device shaking", "device in free fall"
AUD_LOW, AUD_HIGH, AUD_SILENCE = "low hum", "high whistle", "silence"
DEP_CLOSE, DEP_FAR = "object close to the camera", "open space far away"
THM_WARM, THM_COLD = "warm body in view", "cold empty scene"
SIGNAL_CONCEPTS = [IMU_REST, IMU_SHAKE, IMU_FALL, AUD_LOW, AUD_HIGH, AUD_SILENCE,
                   DEP_CLOSE, DEP_FAR, THM_WARM, THM_COLD]
DISTRACTORS = ["dog barking", "person walking", "door closing", "car passing by", "rain falling",
               "people talking", "music playing", "glass breaking", "keyboard typing",
               "bird singing", "baby crying", "water running"]
LABELS = SIGNAL_CONCEPTS + DISTRACTORS
# Vision concepts come after the original bank rows and are drawn from their own generator, so
# adding them left every earlier model file byte-identical (make_vision_concepts).
VIS_DARK, VIS_BRIGHT, VIS_RED = "dark night scene", "bright daylight scene", "red object in view"
VISION_CONCEPTS = [VIS_DARK, VIS_BRIGHT, VIS_RED]
ALL_LABELS = LABELS + VISION_CONCEPTS


def make_concepts():
    """Signal concepts: exactly orthonormal directions (QR of a Gaussian matrix). Distractors:
    independent random unit vectors (|cos| with anything ~ 1/sqrt(1024) = 0.03). Rows are then
    scaled by arbitrary norms in [0.5, 3] so consumers must L2-normalise (SPEC.md: cosine)."""
    rng = np.random.default_rng(20240601)
    q, _ = np.linalg.qr(rng.standard_normal((DIM, len(SIGNAL_CONCEPTS))))
    sig = q.T                                                         # [10, 1024] orthonormal
    dis = rng.standard_normal((len(DISTRACTORS), DIM))
    dis /= np.linalg.norm(dis, axis=1, keepdims=True)
    unit = np.concatenate([sig, dis], 0)
    norms = rng.uniform(0.5, 3.0, size=(len(LABELS), 1))
    return unit, (unit * norms).astype(np.float32)


def make_vision_concepts(unit):
    """Vision concepts: orthonormal to each other and to every earlier bank row (QR of the
    earlier rows followed by fresh Gaussian columns), norms in [0.5, 3] like the others."""
    rng = np.random.default_rng(20261207)
    fresh = rng.standard_normal((DIM, len(VISION_CONCEPTS)))
    q, _ = np.linalg.qr(np.concatenate([unit.T, fresh], 1))
    vis = q[:, unit.shape[0]:].T                                      # [3, 1024]
    norms = rng.uniform(0.5, 3.0, size=(len(VISION_CONCEPTS), 1))
    return vis, (vis * norms).astype(np.float32)


# --------------------------------------------------------------------------- graph helpers
class Graph:
    """Tiny wrapper over onnx.helper that names nodes and initializers deterministically."""

    def __init__(self, name):
        self.name, self.nodes, self.inits, self.n = name, [], [], 0

    def _name(self, op):
        self.n += 1
        return f"{op.lower()}_{self.n}"

    def const(self, value, dtype=np.float32, name=None):
        arr = np.asarray(value, dtype=dtype)
        name = name or self._name("c")
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type, *inputs, **attrs):
        out = self._name(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out + "_node", **attrs))
        return out

    # affine sigmoid gate: sigmoid((x - centre) / width)
    def gate(self, x, centre, width):
        return self.op("Sigmoid", self.op("Div", self.op("Sub", x, self.const(centre)),
                                          self.const(width)))

    def one_minus(self, x):
        return self.op("Sub", self.const(1.0), x)

    def l2_scale(self, v, scale, out_name):
        """ImageBind postprocessor: F.normalize(v, dim=-1, eps=1e-12) * scale."""
        n = self.op("ReduceL2", v, axes=[-1], keepdims=1)
        n = self.op("Max", n, self.const(1e-12))
        y = self.op("Mul", self.op("Div", v, n), self.const(scale))
        self.nodes.append(helper.make_node("Identity", [y], [out_name], name="output_identity"))

    def perturbation(self, feats, n_in, rng, w1_scale, hidden=16, out_norm=0.006):
        """Small input-dependent vector: tanh(feats @ W1) @ W2 with ||W2 row|| = out_norm, so its
        norm is at most hidden * out_norm (0.096) whatever the input (typically ~0.02)."""
        w1 = rng.standard_normal((n_in, hidden)) * (w1_scale / math.sqrt(n_in))
        w2 = rng.standard_normal((hidden, DIM))
        w2 *= out_norm / np.linalg.norm(w2, axis=1, keepdims=True)
        h = self.op("Tanh", self.op("MatMul", feats, self.const(w1)))
        return h, w2

    def model(self, inp, in_shape, out_shape, doc):
        g = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info(inp, TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, out_shape)],
            initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edgebind tools/make_tiny_models.py",
                              producer_version="1", doc_string=doc)
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m, full_check=True)
        return m


def directions(unit, *labels):
    return np.stack([unit[ALL_LABELS.index(lab)] for lab in labels], 0)    # [k, 1024]


# --------------------------------------------------------------------------- IMU
# Per 8-sample token (20 ms at 400 Hz, ImageBind's patch): motion m_t = mean |first difference|
# of acc + 2 * that of gyro. A token is "moving" when m_t > 0.08 (geometric middle between sensor
# noise ~0.02 and shaking ~0.3). s = majority vote of moving tokens over the window.
# Gravity gate g = sigmoid((mean acc_z - 4.9) / 0.8): +1 g on acc_z (channel 2) is expected;
# without it (gyro fed as acc, axes swapped, units in g, [2000,6] read as [6,2000]) the window
# lands on "device in free fall". embedding ~ g(1-s) rest + g s shaking + (1-g) free fall.
IMU_TOKEN = 8
IMU_MOTION_THRESHOLD = 0.08
IMU_MOTION_WIDTH = 0.3      # in ln units
IMU_VOTE_WIDTH = 0.08
IMU_GRAVITY_CENTRE, IMU_GRAVITY_WIDTH = 4.9, 0.8


def build_imu(unit, n_samples=2000):
    g = Graph("edgebind_tiny_imu")
    rng = np.random.default_rng(1001)
    x = "imu"
    n_tok = n_samples // IMU_TOKEN
    # first difference along time, padded with one zero so it tokenises like the input
    d = g.op("Sub", g.op("Slice", x, g.const([1], np.int64), g.const([n_samples], np.int64),
                         g.const([2], np.int64)),
             g.op("Slice", x, g.const([0], np.int64), g.const([n_samples - 1], np.int64),
                  g.const([2], np.int64)))
    d = g.op("Pad", g.op("Abs", d), g.const([0, 0, 0, 0, 0, 1], np.int64))
    d = g.op("Reshape", d, g.const([0, 6, n_tok, IMU_TOKEN], np.int64))
    w = g.const(np.array([2, 2, 2, 4, 4, 4], np.float32).reshape(1, 6, 1, 1))  # x6: mean over 6 ch
    m = g.op("ReduceMean", g.op("Mul", d, w), axes=[1, 3], keepdims=0)          # [B, n_tok]
    lm = g.op("Log", g.op("Add", m, g.const(1e-6)))
    moving = g.gate(lm, math.log(IMU_MOTION_THRESHOLD), IMU_MOTION_WIDTH)
    frac = g.op("ReduceMean", moving, axes=[1], keepdims=1)                    # [B, 1]
    s = g.gate(frac, 0.5, IMU_VOTE_WIDTH)
    mean = g.op("ReduceMean", x, axes=[2], keepdims=0)                          # [B, 6]
    acc_z = g.op("Slice", mean, g.const([2], np.int64), g.const([3], np.int64),
                 g.const([1], np.int64))                                        # [B, 1]
    grav = g.gate(acc_z, IMU_GRAVITY_CENTRE, IMU_GRAVITY_WIDTH)
    coef = g.op("Concat", g.op("Mul", grav, g.one_minus(s)), g.op("Mul", grav, s),
                g.one_minus(grav), axis=1)                                      # [B, 3]
    main = g.op("MatMul", coef, g.const(directions(unit, IMU_REST, IMU_SHAKE, IMU_FALL)))
    # perturbation on ImageBind's own token layout (channel-major 48-vectors), position-weighted
    tok = g.op("Reshape", x, g.const([0, 6, n_tok, IMU_TOKEN], np.int64))
    tok = g.op("Transpose", tok, perm=[0, 2, 1, 3])
    tok = g.op("Reshape", tok, g.const([0, n_tok, 6 * IMU_TOKEN], np.int64))   # [B, n_tok, 48]
    h, w2 = g.perturbation(tok, 48, rng, w1_scale=0.5)
    pos = 1.0 + 0.5 * rng.standard_normal((n_tok, 16))
    h = g.op("ReduceMean", g.op("Mul", h, g.const(pos)), axes=[1], keepdims=0)  # [B, 16]
    v = g.op("Add", main, g.op("MatMul", h, g.const(w2)))
    # and on per-channel mean and standard deviation (scaled so +1 g does not saturate tanh),
    # so that swapping two axes changes the numbers even when the labels stay the same
    dev = g.op("Sub", x, g.op("ReduceMean", x, axes=[2], keepdims=1))
    std = g.op("Sqrt", g.op("ReduceMean", g.op("Mul", dev, dev), axes=[2], keepdims=0))
    stats = g.op("Mul", g.op("Concat", mean, std, axis=1),
                 g.const([0.15] * 6 + [1.0] * 6))                                # [B, 12]
    h2, w2b = g.perturbation(stats, 12, rng, w1_scale=1.0)
    v = g.op("Add", v, g.op("MatMul", h2, g.const(w2b)))
    g.l2_scale(v, 5.0, "embedding")
    return g.model(x, ["batch", 6, n_samples], ["batch", DIM],
                   "edgebind-tiny IMU stand-in (NOT ImageBind): rest / shaking / free fall")


# --------------------------------------------------------------------------- audio
# Per clip (input = ImageBind's normalised log-mel fbank, [128 mel bins, 204 frames]):
# 1. whiten: subtract the log-mel profile P of white noise (pre-emphasis makes low bins ~1.6
#    lower, wide high mel bands ~0.45 higher), so any broadband noise is flat;
# 2. per frame, baseline = max(P + mean_over_bins(x - P), log floor + 0.05) and peak energy
#    W = relu(x - baseline - 0.8), zeroed on constant frames (digital silence, the 0.467 padding);
# 3. centroid c = sum(bin * W) / sum(W) over bins and frames; E = mean(W);
#    q = sigmoid((ln E - ln 0.002) / 0.5) gates "silence" (flat or floor-level spectra);
#    h = sigmoid((c - 50) / 6) blends "low hum" (200 Hz ~ bin 10) and "high whistle" (4 kHz ~ bin 96).
# Per-clip embeddings are L2-normalised x20 and averaged over the S clips, as ImageBind does.
AUD_PEAK_OFFSET = 0.8
AUD_ENERGY_THRESHOLD, AUD_ENERGY_WIDTH = 0.002, 0.5
AUD_CENTROID_BIN, AUD_CENTROID_WIDTH = 50.0, 6.0
AUD_FLOOR = (math.log(float(np.finfo(np.float32).eps)) - MEL_MEAN) / MEL_STD  # -1.2774


def white_noise_profile():
    """Mean normalised log-mel of white noise per bin, minus its mean; rounded to 1e-4 so that
    last-bit differences between FFT/libm builds cannot change the model bytes."""
    rng = np.random.default_rng(1005)
    prof = np.mean([audio_clip(0.1 * rng.standard_normal(32000))[:, :198].mean(1)
                    for _ in range(8)], 0)
    return np.round(prof - prof.mean(), 4)


def build_audio(unit):
    g = Graph("edgebind_tiny_audio")
    rng = np.random.default_rng(1002)
    a = "audio"
    x = g.op("Reshape", a, g.const([-1, 128, 204], np.int64))                   # [B*S, 128, 204]
    prof = g.const(white_noise_profile().reshape(1, 128, 1))
    level = g.op("ReduceMean", g.op("Sub", x, prof), axes=[1], keepdims=1)      # [N, 1, 204]
    base = g.op("Max", g.op("Add", prof, level), g.const(AUD_FLOOR + 0.05))
    spread = g.op("Sub", g.op("ReduceMax", x, axes=[1], keepdims=1),
                  g.op("ReduceMin", x, axes=[1], keepdims=1))
    active = g.op("Min", g.op("Div", spread, g.const(0.05)), g.const(1.0))     # 0 on flat frames
    w = g.op("Relu", g.op("Sub", g.op("Sub", x, base), g.const(AUD_PEAK_OFFSET)))
    w = g.op("Mul", w, active)
    bins = g.const(np.arange(128, dtype=np.float32).reshape(1, 128, 1))
    wsum = g.op("ReduceSum", w, g.const([1, 2], np.int64), keepdims=0)          # [N]
    csum = g.op("ReduceSum", g.op("Mul", w, bins), g.const([1, 2], np.int64), keepdims=0)
    c = g.op("Div", csum, g.op("Add", wsum, g.const(1e-3)))
    e = g.op("Div", wsum, g.const(128.0 * 204.0))
    q = g.gate(g.op("Log", g.op("Add", e, g.const(1e-6))), math.log(AUD_ENERGY_THRESHOLD),
               AUD_ENERGY_WIDTH)
    h = g.gate(c, AUD_CENTROID_BIN, AUD_CENTROID_WIDTH)
    coef = g.op("Concat", *[g.op("Unsqueeze", t, g.const([1], np.int64)) for t in
                            (g.op("Mul", q, g.one_minus(h)), g.op("Mul", q, h), g.one_minus(q))],
                axis=1)                                                         # [N, 3]
    main = g.op("MatMul", coef, g.const(directions(unit, AUD_LOW, AUD_HIGH, AUD_SILENCE)))
    spec = g.op("ReduceMean", x, axes=[2], keepdims=0)                          # [N, 128]
    hid, w2 = g.perturbation(spec, 128, rng, w1_scale=1.0)
    v = g.op("Add", main, g.op("MatMul", hid, g.const(w2)))
    # per-clip postprocessor (normalise x20), then mean over the S clips (model.py L470-472)
    n = g.op("Max", g.op("ReduceL2", v, axes=[-1], keepdims=1), g.const(1e-12))
    per_clip = g.op("Mul", g.op("Div", v, n), g.const(20.0))
    bs = g.op("Slice", g.op("Shape", a), g.const([0], np.int64), g.const([2], np.int64))
    per_clip = g.op("Reshape", per_clip, g.op("Concat", bs, g.const([DIM], np.int64), axis=0))
    y = g.op("ReduceMean", per_clip, axes=[1], keepdims=0)
    g.nodes.append(helper.make_node("Identity", [y], ["embedding"], name="output_identity"))
    return g.model(a, ["batch", "clips", 1, 128, 204], ["batch", DIM],
                   "edgebind-tiny audio stand-in (NOT ImageBind): low hum / high whistle / silence")


# --------------------------------------------------------------------------- depth
# Input: normalised disparity (SPEC.md section 3: disparity/75, then (x-0.0418)/0.0295).
# Mean over the image; sigmoid((mean - 12) / 3): 12 ~ a plane at 1.3 m. Near => large values.
DEP_CENTRE, DEP_WIDTH = 12.0, 3.0


def build_depth(unit):
    g = Graph("edgebind_tiny_depth")
    rng = np.random.default_rng(1003)
    x = "depth"
    mean = g.op("ReduceMean", x, axes=[2, 3], keepdims=0)                       # [B, 1]
    s = g.gate(mean, DEP_CENTRE, DEP_WIDTH)
    coef = g.op("Concat", s, g.one_minus(s), axis=1)
    main = g.op("MatMul", coef, g.const(directions(unit, DEP_CLOSE, DEP_FAR)))
    pooled = g.op("AveragePool", x, kernel_shape=[16, 16], strides=[16, 16])   # [B,1,14,14]
    pooled = g.op("Reshape", pooled, g.const([0, 196], np.int64))
    hid, w2 = g.perturbation(pooled, 196, rng, w1_scale=0.05)
    v = g.op("Add", main, g.op("MatMul", hid, g.const(w2)))
    g.l2_scale(v, 5.0, "embedding")
    return g.model(x, ["batch", 1, 224, 224], ["batch", DIM],
                   "edgebind-tiny depth stand-in (NOT ImageBind): close object / far open space")


# --------------------------------------------------------------------------- thermal
# Input 0..1 (8-bit /255, brighter = warmer). Contrast f = max over the 8x8-averaged central
# 112x112 region minus the global mean; sigmoid((f - 0.3) / 0.05): a warm blob in the middle of a
# cooler scene => "warm body in view"; a uniform (or noise-only) scene => "cold empty scene".
THM_CENTRE, THM_WIDTH = 0.3, 0.05


def build_thermal(unit):
    g = Graph("edgebind_tiny_thermal")
    rng = np.random.default_rng(1004)
    x = "thermal"
    centre = g.op("Slice", x, g.const([56, 56], np.int64), g.const([168, 168], np.int64),
                  g.const([2, 3], np.int64))
    cmax = g.op("ReduceMax", g.op("AveragePool", centre, kernel_shape=[8, 8], strides=[8, 8]),
                axes=[2, 3], keepdims=0)                                        # [B, 1]
    gmean = g.op("ReduceMean", x, axes=[2, 3], keepdims=0)
    s = g.gate(g.op("Sub", cmax, gmean), THM_CENTRE, THM_WIDTH)
    coef = g.op("Concat", s, g.one_minus(s), axis=1)
    main = g.op("MatMul", coef, g.const(directions(unit, THM_WARM, THM_COLD)))
    pooled = g.op("AveragePool", x, kernel_shape=[16, 16], strides=[16, 16])
    pooled = g.op("Reshape", pooled, g.const([0, 196], np.int64))
    hid, w2 = g.perturbation(pooled, 196, rng, w1_scale=2.0)
    v = g.op("Add", main, g.op("MatMul", hid, g.const(w2)))
    g.l2_scale(v, 10.0, "embedding")
    return g.model(x, ["batch", 1, 224, 224], ["batch", DIM],
                   "edgebind-tiny thermal stand-in (NOT ImageBind): warm body / cold empty scene")


# --------------------------------------------------------------------------- vision
# Input: ImageBind's CLIP-normalised RGB [B, 3, 224, 224] (SPEC.md section 6); the graph undoes
# the normalisation (x * std + mean -> 0..1). Brightness b = sigmoid((mean luma - 0.3) / 0.05)
# (BT.601 weights); redness r = sigmoid((max over 16x16 blocks of mean(R - max(G, B)) - 0.4) /
# 0.06): a block of strongly red pixels => "red object in view", otherwise bright => "bright
# daylight scene", dark => "dark night scene". BGR fed as RGB turns a red object blue; a missing
# Normalize makes a dark scene look bright.
VIS_MEAN = [0.48145466, 0.4578275, 0.40821073]
VIS_STD = [0.26862954, 0.26130258, 0.27577711]
VIS_LUMA_CENTRE, VIS_LUMA_WIDTH = 0.3, 0.05
VIS_RED_CENTRE, VIS_RED_WIDTH = 0.4, 0.06


def build_vision(unit):
    g = Graph("edgebind_tiny_vision")
    rng = np.random.default_rng(1006)
    x = "vision"
    rgb = g.op("Add", g.op("Mul", x, g.const(np.reshape(VIS_STD, (1, 3, 1, 1)))),
               g.const(np.reshape(VIS_MEAN, (1, 3, 1, 1))))                   # 0..1
    luma = g.op("ReduceSum", g.op("Mul", rgb, g.const(np.reshape([0.299, 0.587, 0.114],
                                                                 (1, 3, 1, 1)))),
                g.const([1], np.int64), keepdims=1)                             # [B,1,224,224]
    b = g.gate(g.op("ReduceMean", luma, axes=[2, 3], keepdims=0), VIS_LUMA_CENTRE,
               VIS_LUMA_WIDTH)                                                  # [B, 1]
    chan = [g.op("Slice", rgb, g.const([c], np.int64), g.const([c + 1], np.int64),
                 g.const([1], np.int64)) for c in range(3)]
    red = g.op("Sub", chan[0], g.op("Max", chan[1], chan[2]))
    red = g.op("ReduceMax", g.op("AveragePool", red, kernel_shape=[16, 16], strides=[16, 16]),
               axes=[2, 3], keepdims=0)                                         # [B, 1]
    r = g.gate(red, VIS_RED_CENTRE, VIS_RED_WIDTH)
    not_r = g.one_minus(r)
    coef = g.op("Concat", g.op("Mul", not_r, g.one_minus(b)), g.op("Mul", not_r, b), r, axis=1)
    main = g.op("MatMul", coef, g.const(directions(unit, VIS_DARK, VIS_BRIGHT, VIS_RED)))
    pooled = g.op("AveragePool", x, kernel_shape=[16, 16], strides=[16, 16])   # [B,3,14,14]
    pooled = g.op("Reshape", pooled, g.const([0, 3 * 196], np.int64))
    hid, w2 = g.perturbation(pooled, 3 * 196, rng, w1_scale=0.5)
    v = g.op("Add", main, g.op("MatMul", hid, g.const(w2)))
    g.l2_scale(v, 1.0, "embedding")    # ImageBind's vision postprocessor: normalise, no scale
    return g.model(x, ["batch", 3, 224, 224], ["batch", DIM],
                   "edgebind-tiny vision stand-in (NOT ImageBind): dark / bright / red object")


# --------------------------------------------------------------------------- synthetic inputs
def imu_window(kind, fs=400.0, seconds=5.0, seed=0):
    """[6, N] float64: acc (m/s^2, +9.81 on z) and gyro (rad/s)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * seconds))) / fs
    x = np.zeros((6, len(t)))
    x[2] = 9.81
    x[:3] += 0.02 * rng.standard_normal((3, len(t)))
    x[3:] += 0.002 * rng.standard_normal((3, len(t)))
    if kind == "shaking":
        for ch, (a3, a7) in enumerate([(4.0, 2.5), (3.0, 2.0), (2.0, 1.5),
                                       (2.0, 1.0), (1.5, 0.8), (1.0, 0.5)]):
            x[ch] += a3 * np.sin(2 * np.pi * 3.0 * t + 0.7 * ch) \
                + a7 * np.sin(2 * np.pi * 7.0 * t + 1.3 * ch)
    return x


def resample_linear(x, n_out):
    """numpy twin of torch.nn.functional.interpolate(x[None], n_out, mode='linear',
    align_corners=False)[0] (what the daemon does for IMU rates other than 400 Hz)."""
    n_in = x.shape[-1]
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    return x[..., i0] * (1.0 - lam) + x[..., i1] * lam


def mel_banks():
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
    lo, hi = mel(20.0), mel(8000.0)
    delta = (hi - lo) / 129.0
    b = np.arange(128)[:, None]
    fm = mel(np.arange(256) * 16000.0 / 512.0)[None, :]
    up = (fm - (lo + b * delta)) / delta
    down = ((lo + (b + 2) * delta) - fm) / delta
    return np.concatenate([np.maximum(0.0, np.minimum(up, down)), np.zeros((128, 1))], 1)


def audio_clip(wave16k):
    """ImageBind audio preprocessing of one 2 s clip (SPEC.md section 2, steps 4-5), float64:
    kaldi fbank (25/10 ms, DC removal, pre-emphasis 0.97, symmetric Hann, 512-point power
    spectrum, 128 mel bins 20 Hz-8 kHz, log floor f32 eps), pad with 0 to 204 frames, normalise."""
    x = wave16k - wave16k.mean()
    n_frames = 1 + (len(x) - 400) // 160
    idx = np.arange(n_frames)[:, None] * 160 + np.arange(400)[None, :]
    fr = x[idx]
    fr = fr - fr.mean(1, keepdims=True)
    fr = fr - 0.97 * np.concatenate([fr[:, :1], fr[:, :-1]], 1)
    fr = fr * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399))
    power = np.abs(np.fft.rfft(fr, 512)) ** 2
    fb = np.log(np.maximum(power @ mel_banks().T, np.finfo(np.float32).eps)).T   # [128, frames]
    fb = np.concatenate([fb, np.zeros((128, 204 - n_frames))], 1)[:, :204]
    return (fb - MEL_MEAN) / MEL_STD


def audio_input(wave16k, clips=3):
    c = audio_clip(wave16k)
    return np.stack([c] * clips, 0)[None, :, None].astype(np.float32)       # [1, S, 1, 128, 204]


def tone(freq_hz, amp=0.3, noise=2e-4, seconds=2.0, seed=0):
    """16 kHz sine plus white noise, quantised like int16 PCM / 32768."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000.0
    w = amp * np.sin(2 * np.pi * freq_hz * t) + noise * rng.standard_normal(len(t))
    return np.round(np.clip(w, -1.0, 1.0) * 32767) / 32768.0


def depth_input(depth_m, normalise=True):
    """metres -> ImageBind depth input (SPEC.md section 3, steps 2-4 and 7; no resize needed)."""
    d = np.clip(depth_m, 0.01, 50.0)
    disp = (0.075 * 518.857901) / d
    x = np.clip(disp, 0.01, 75.0) / 75.0
    if normalise:
        x = (x - 0.0418) / 0.0295
    return x[None, None].astype(np.float32)


def depth_scene(kind, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224]
    if kind == "close":     # a box filling most of the view at 0.4-0.6 m in front of a 3 m wall
        d = np.full((224, 224), 3.0)
        d[20:204, 30:194] = 0.5 + 0.1 * (xx[20:204, 30:194] - 112) / 82.0
    else:                   # corridor/open space: floor from 1.5 m up to a 8 m far wall
        d = 8.0 - 6.5 * np.clip((yy - 112) / 112.0, 0, 1)
    return d + 0.005 * rng.standard_normal(d.shape)


def thermal_scene(kind, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224]
    img = 0.22 + 0.04 * (yy / 224.0) + 0.02 * rng.standard_normal((224, 224))
    if kind == "warm":      # a person-sized warm ellipse in the middle
        body = ((xx - 112) / 28.0) ** 2 + ((yy - 120) / 70.0) ** 2 <= 1.0
        img[body] = 0.85 + 0.02 * rng.standard_normal(body.sum())
    elif kind == "cold_agc":  # empty room after per-frame min/max AGC: noise stretched to 0..1
        img = rng.standard_normal((224, 224))
        img = (img - img.min()) / (img.max() - img.min())
    return np.clip(np.round(img * 255) / 255.0, 0, 1)[None, None].astype(np.float32)


def vision_scene(kind, seed=0, normalise=True, bgr=False):
    """[1, 3, 224, 224] model input of a synthetic RGB picture (0..1 in 8-bit steps)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    sky = np.stack([0.45 + 0.2 * yy, 0.65 + 0.15 * yy, 0.95 - 0.1 * yy], 0)
    grass = np.stack([0.25 + 0 * yy, 0.6 + 0.1 * xx, 0.2 + 0 * yy], 0)
    img = np.where(yy < 0.55, sky, grass) + 0.02 * rng.standard_normal((3, 224, 224))
    if kind == "dark":
        img = img * 0.12
    elif kind == "red":     # a red ball on a grey floor under indoor light
        img = np.full((3, 224, 224), 0.35) + 0.02 * rng.standard_normal((3, 224, 224))
        ball = (xx - 0.55) ** 2 + (yy - 0.5) ** 2 <= 0.2 ** 2
        img[:, ball] = np.array([[0.85], [0.08], [0.06]])
    img = np.clip(np.round(img * 255) / 255.0, 0, 1)
    if bgr:
        img = img[::-1]
    if normalise:
        img = (img - np.reshape(VIS_MEAN, (3, 1, 1))) / np.reshape(VIS_STD, (3, 1, 1))
    return img[None].astype(np.float32)


# --------------------------------------------------------------------------- verification
def top2(emb, unit):
    e = emb / np.linalg.norm(emb)
    cos = unit @ e
    order = np.argsort(-cos)
    return ALL_LABELS[order[0]], float(cos[order[0]]), ALL_LABELS[order[1]], float(cos[order[1]])


def verify(out_dir, unit_rows, refdata):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = {m: ort.InferenceSession(os.path.join(out_dir, f"{m}.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
            for m in ("imu", "audio", "depth", "thermal", "vision")}
    # the bank as stored (not normalised) -> normalise here as any consumer must
    bank = np.load(os.path.join(out_dir, "concepts.npy")).astype(np.float64)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    assert np.allclose(bank, unit_rows, atol=1e-6)

    def run(m, x):
        return sess[m].run(["embedding"], {m: x})[0]

    still, shake = imu_window("still", seed=1), imu_window("shaking", seed=2)
    still200, shake200 = imu_window("still", 200.0, seed=3), imu_window("shaking", 200.0, seed=4)
    swapped = still[[3, 4, 5, 0, 1, 2]]
    xz = still[[2, 1, 0, 3, 4, 5]]
    transposed = np.ascontiguousarray(still.T).reshape(6, 2000)
    f32 = lambda a: a[None].astype(np.float32)
    silence = np.zeros(32000)
    rng = np.random.default_rng(5)
    hiss = np.round(0.05 * rng.standard_normal(32000) * 32767) / 32768.0
    close, far = depth_scene("close", 1), depth_scene("far", 2)

    # (modality, case, input, expected label, must_be_top1)
    # must_be_top1=True: intended concept, top-1 with margin >= MIN_MARGIN.
    # must_be_top1=False: a deliberate mis-wiring; the correct label must NOT be top-1.
    cases = [
        ("imu", "still 400 Hz, 5 s", f32(still), IMU_REST, True),
        ("imu", "shaking 400 Hz (3+7 Hz)", f32(shake), IMU_SHAKE, True),
        ("imu", "still 200 Hz -> 2000 lin.", f32(resample_linear(still200, 2000)), IMU_REST, True),
        ("imu", "shaking 200 Hz -> 2000 lin.", f32(resample_linear(shake200, 2000)), IMU_SHAKE,
         True),
        ("imu", "free fall (acc = 0)", f32(np.concatenate([still[:3] - still[:3].mean(1, keepdims=True),
                                                           still[3:]])), IMU_FALL, True),
        ("imu", "MISWIRED still: gyro<->acc", f32(swapped), IMU_REST, False),
        ("imu", "MISWIRED still: acc x<->z", f32(xz), IMU_REST, False),
        ("imu", "MISWIRED still: acc in g", f32(np.concatenate([still[:3] / 9.81, still[3:]])),
         IMU_REST, False),
        ("imu", "MISWIRED still: [2000,6] as [6,2000]", f32(transposed), IMU_REST, False),
        ("audio", "200 Hz tone, S=3", audio_input(tone(200.0, seed=6)), AUD_LOW, True),
        ("audio", "200 Hz tone, S=1", audio_input(tone(200.0, seed=6), 1), AUD_LOW, True),
        ("audio", "4 kHz tone, S=3", audio_input(tone(4000.0, seed=7)), AUD_HIGH, True),
        ("audio", "4 kHz tone, quiet (amp 0.01)", audio_input(tone(4000.0, 0.01, seed=8)), AUD_HIGH,
         True),
        ("audio", "200 Hz tone + white noise 0.01", audio_input(tone(200.0, noise=0.01, seed=9)),
         AUD_LOW, True),
        ("audio", "4 kHz tone + white noise 0.01", audio_input(tone(4000.0, noise=0.01, seed=10)),
         AUD_HIGH, True),
        ("audio", "digital silence", audio_input(silence), AUD_SILENCE, True),
        ("audio", "white noise 0.05 (flat spectrum)", audio_input(hiss), AUD_SILENCE, True),
        ("audio", "MISWIRED 200 Hz: mel axis flipped", audio_input(tone(200.0, seed=6))[:, :, :, ::-1]
         .copy(), AUD_LOW, False),
        ("audio", "MISWIRED 4 kHz: mel axis flipped", audio_input(tone(4000.0, seed=7))[:, :, :, ::-1]
         .copy(), AUD_HIGH, False),
        ("depth", "box at 0.5 m", depth_input(close), DEP_CLOSE, True),
        ("depth", "open space 1.5-8 m", depth_input(far), DEP_FAR, True),
        ("depth", "MISWIRED box at 0.5 m: no Normalize", depth_input(close, False), DEP_CLOSE,
         False),
        ("depth", "MISWIRED box at 0.5 m: depth not disparity",
         ((np.clip(close, 0.01, 75) / 75 - 0.0418) / 0.0295)[None, None].astype(np.float32),
         DEP_CLOSE, False),
        ("thermal", "warm body on 0.22 background", thermal_scene("warm", 1), THM_WARM, True),
        ("thermal", "cold empty scene", thermal_scene("cold", 2), THM_COLD, True),
        ("thermal", "cold empty scene after AGC", thermal_scene("cold_agc", 3), THM_COLD, True),
        ("thermal", "MISWIRED warm body: polarity inverted", 1.0 - thermal_scene("warm", 1),
         THM_WARM, False),
        ("vision", "bright daylight: sky over grass", vision_scene("bright", 1), VIS_BRIGHT, True),
        ("vision", "dark night: the same at 12 %", vision_scene("dark", 2), VIS_DARK, True),
        ("vision", "red ball on a grey floor", vision_scene("red", 3), VIS_RED, True),
        ("vision", "MISWIRED red ball: BGR as RGB", vision_scene("red", 3, bgr=True), VIS_RED,
         False),
        ("vision", "MISWIRED dark night: no Normalize", vision_scene("dark", 2, normalise=False),
         VIS_DARK, False),
    ]
    ok = True
    rows = []
    for mod, case, x, want, must in cases:
        emb = run(mod, x)
        assert emb.shape == (1, DIM) and emb.dtype == np.float32
        l1, c1, l2, c2 = top2(emb[0].astype(np.float64), unit_rows)
        margin = c1 - c2
        if must:
            good = l1 == want and margin >= MIN_MARGIN
        else:
            good = l1 != want
        ok &= good
        rows.append((mod, case, want if must else f"not '{want}'", l1, c1, l2, c2, margin,
                     float(np.linalg.norm(emb)), "ok" if good else "FAIL"))

    # informational: what the tiny audio model says about the refdata fbank tensors
    for name in ("speech_44k1_stereo_5s", "chirp_noise_16k_mono_9s5", "window_2s_44k1_stereo"):
        p = os.path.join(refdata, "audio", f"{name}.out.npy")
        if os.path.exists(p):
            emb = run("audio", np.load(p))
            l1, c1, l2, c2 = top2(emb[0].astype(np.float64), unit_rows)
            rows.append(("audio", f"(info) refdata {name}", "-", l1, c1, l2, c2, c1 - c2,
                         float(np.linalg.norm(emb)), "info"))

    for name in ("rgb_640x480", "rgb_160x120", "yuyv_640x480"):
        p = os.path.join(refdata, "vision", f"{name}_out_3x224x224_f32.npy")
        if os.path.exists(p):
            emb = run("vision", np.load(p)[None])
            l1, c1, l2, c2 = top2(emb[0].astype(np.float64), unit_rows)
            rows.append(("vision", f"(info) refdata {name}", "-", l1, c1, l2, c2, c1 - c2,
                         float(np.linalg.norm(emb)), "info"))

    w = max(len(r[1]) for r in rows)
    print(f"{'mod':8s} {'signal':{w}s} {'expected':34s} {'top-1':28s} {'cos':>6s} "
          f"{'2nd':28s} {'cos':>6s} {'margin':>6s} {'|emb|':>6s}")
    for r in rows:
        print(f"{r[0]:8s} {r[1]:{w}s} {r[2]:34s} {r[3]:28s} {r[4]:6.3f} {r[5]:28s} {r[6]:6.3f} "
              f"{r[7]:6.3f} {r[8]:6.2f} {r[9]}")

    # batching and dynamic dims: batch of 2 equals two batch-1 runs; audio S=2 of different clips
    b2 = run("imu", np.concatenate([f32(still), f32(shake)], 0))
    ok &= np.allclose(b2[0], run("imu", f32(still))[0], atol=1e-5)
    ok &= np.allclose(b2[1], run("imu", f32(shake))[0], atol=1e-5)
    mix = np.concatenate([audio_input(tone(200.0, seed=6), 1), audio_input(tone(4000.0, seed=7), 1)],
                         1)
    a2 = run("audio", np.concatenate([mix, mix], 0))
    ok &= a2.shape == (2, DIM) and np.allclose(a2[0], a2[1], atol=1e-5)
    print(f"batch-2 / S=2 checks: {'ok' if ok else 'FAIL'}; mixed-clip audio |emb| = "
          f"{np.linalg.norm(a2[0]):.2f} (< 20 because the clips differ)")
    return ok


# --------------------------------------------------------------------------- parity references
def reference_inputs():
    """One signal per encoder, batch of one, exactly as the model takes it."""
    return {
        "imu": imu_window("still", seed=1)[None].astype(np.float32),
        "audio": audio_input(tone(200.0, seed=6), 1),
        "depth": depth_input(depth_scene("close", 1)),
        "thermal": thermal_scene("warm", 1),
        "vision": vision_scene("bright", 1),
    }


def write_references(out_dir):
    """The parity check's pairs: each encoder's output for its reference input from ONNX
    Runtime's CPU provider. The daemon refuses a provider whose output for the same input has a
    cosine below runtime.parity.min_cosine with this one."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    entries = {}
    for name, x in reference_inputs().items():
        sess = ort.InferenceSession(os.path.join(out_dir, f"{name}.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
        y = sess.run(["embedding"], {name: x})[0]
        assert y.shape == (x.shape[0], DIM) and y.dtype == np.float32 and np.isfinite(y).all()
        files = {}
        for kind, arr in (("input", x), ("output", y)):
            fn = f"{name}_reference_{kind}.npy"
            np.save(os.path.join(out_dir, fn), np.ascontiguousarray(arr))
            files[kind] = fn
        entries[name] = {"input": files["input"],
                         "input_sha256": sha256(os.path.join(out_dir, files["input"])),
                         "output": files["output"],
                         "output_sha256": sha256(os.path.join(out_dir, files["output"]))}
    return entries


# --------------------------------------------------------------------------- main
def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def save_model(model, path):
    with open(path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "models", "tiny"))
    ap.add_argument("--fixtures", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--refdata", default=os.environ.get("EDGEBIND_REFDATA")
                    or os.path.join(REPO, "..", "shared", "refdata"))
    ap.add_argument("--int8", nargs="?", const=os.path.join(REPO, "models", "tiny-int8"),
                    metavar="DIR", help="also write the int8 set made from it by "
                    "tools/quantize_int8.py (default models/tiny-int8)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    fix_models = os.path.join(args.fixtures, "models")
    os.makedirs(fix_models, exist_ok=True)

    unit, bank = make_concepts()
    vis_unit, vis_bank = make_vision_concepts(unit)
    unit = np.concatenate([unit, vis_unit], 0)
    bank = np.concatenate([bank, vis_bank], 0)
    builders = {"imu": build_imu, "audio": build_audio, "depth": build_depth,
                "thermal": build_thermal, "vision": build_vision}
    for name, build in builders.items():
        save_model(build(unit), os.path.join(args.out, f"{name}.onnx"))
    with open(os.path.join(args.out, "concepts.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(lab + "\n" for lab in ALL_LABELS))
    np.save(os.path.join(args.out, "concepts.npy"), bank)
    references = write_references(args.out)

    manifest = {
        "format": 1,
        "name": "edgebind-tiny",
        "licence": "CC0-1.0 (random stand-in encoders generated by tools/make_tiny_models.py; "
                   "NOT ImageBind)",
        "embedding_dim": DIM,
        "models": {name: {"file": f"{name}.onnx",
                          "sha256": sha256(os.path.join(args.out, f"{name}.onnx")),
                          "input": name, "output": "embedding",
                          "reference": references[name]} for name in builders},
        "concepts": {"labels": "concepts.txt", "embeddings": "concepts.npy",
                     "sha256": {fn: sha256(os.path.join(args.out, fn))
                                for fn in ("concepts.txt", "concepts.npy")}},
    }
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")

    # fixtures: a wrong-shape model and the reference IMU tensor with this model set's output
    save_model(build_imu(unit, n_samples=1000), os.path.join(fix_models, "imu_wrong_shape.onnx"))
    ref_src = os.path.join(args.refdata, "imu", "imu_400hz_5s_6x2000_f32.npy")
    ref = np.load(ref_src)
    if ref.shape != (6, 2000) or ref.dtype != np.float32:
        sys.exit(f"{ref_src}: expected float32 [6,2000], got {ref.dtype} {list(ref.shape)}")
    shutil.copyfile(ref_src, os.path.join(fix_models, "imu_ref_input.npy"))

    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(args.out, "imu.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    ref_out = sess.run(["embedding"], {"imu": ref[None]})[0]
    assert ref_out.shape == (1, DIM) and ref_out.dtype == np.float32
    np.save(os.path.join(fix_models, "imu_ref_output.npy"), ref_out)
    wrong = ort.InferenceSession(os.path.join(fix_models, "imu_wrong_shape.onnx"), opts,
                                 providers=["CPUExecutionProvider"])
    assert wrong.get_inputs()[0].shape == ["batch", 6, 1000]
    l1, c1, l2, c2 = top2(ref_out[0].astype(np.float64), unit)
    print(f"imu_ref_output: top-1 '{l1}' {c1:.3f}, 2nd '{l2}' {c2:.3f}, |emb| "
          f"{np.linalg.norm(ref_out):.3f}")

    ok = verify(args.out, unit, args.refdata)
    for d in (args.out, fix_models):
        for fn in sorted(os.listdir(d)):
            p = os.path.join(d, fn)
            print(f"{os.path.getsize(p):8d}  {sha256(p)}  {os.path.relpath(p, REPO)}")
    if not ok:
        sys.exit("verification FAILED (see table)")
    print("verification passed")
    if args.int8:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import quantize_int8
        quantize_int8.main(["--src", args.out, "--out", args.int8, "--name", "edgebind-tiny-int8",
                            "--refdata", args.refdata, "--threads", "1", "--max-rows", "2"])


if __name__ == "__main__":
    main()
