#!/usr/bin/env python3
"""Write the IMU test recordings (deterministic seeds) and check them with the tiny IMU model.

Files (in <out>, default <repo>/tests/fixtures/recordings):
  imu_still_200hz.csv     7 s at 200 Hz, device lying flat: gravity on +z plus sensor noise
                          (sigma 0.02 m/s^2 acc, 0.002 rad/s gyro)
  imu_shaking_200hz.csv   7 s at 200 Hz, hand shaking: ~3 Hz and ~7 Hz, several m/s^2, ~2 rad/s
  imu_still_400hz.npy     the still motion at 400 Hz, float32 [6, 2800]
  imu_shaking_400hz.npy   the shaking motion at 400 Hz, float32 [6, 2800]
  imu_demo_200hz.csv      16 s at 200 Hz: still 0-4 s, shaking 4-8 s, still 8-12 s, shaking 12-16 s
  imu_still_shake_still_100hz.csv   24 s at 100 Hz: still 0-8 s, shaking 8-16 s, still 16-24 s
                          (trigger tests: one event, windows 6-13 are >= 60 % shaking)
  imu_novelty_100hz.csv   44 s at 100 Hz: still 0-12 s, shaking 12-20 s, still 20-32 s,
                          shaking 32-40 s, still 40-44 s (trigger tests: a segment and its repeat)
  imu_constant_100hz.csv  12 s at 100 Hz of one repeated sample (a stuck sensor)
  thermal_demo_160x120_u16.npy, depth_demo_256x192_u16.npy: camera frames for the demo
  vision_demo/            three 320x240 pictures a colour camera might see, played in name order:
                          01_daylight.png (sky over grass), 02_red_ball.jpg (a red ball on a grey
                          floor, JPEG quality 90, 4:2:0), 03_night.png (the daylight scene at 12 %)

CSV: header `t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z`, then one row per sample; t_s starts at 0
(6 decimals), acc in m/s^2 including gravity (+9.81 on acc_z), gyro in rad/s (6 decimals).
.npy rows: acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z (SPEC.md section 5 channel order).

The check runs <models>/imu.onnx (default <repo>/models/tiny, made by tools/make_tiny_models.py)
on 5 s windows, resampled to 2000 samples exactly as the daemon does
(torch.nn.functional.interpolate(mode="linear", align_corners=False)), and fails unless still ->
"device at rest" and shaking -> "device shaking" with a cosine margin >= 0.2; and
<models>/vision.onnx on the pictures through ImageBind's transform (Pillow: bicubic Resize(224),
CenterCrop(224), /255, CLIP Normalize), which must give "bright daylight scene", "red object in
view" and "dark night scene" with the same margin. Pictures need Pillow.

Usage: tools/make_recordings.py [--out tests/fixtures/recordings] [--models models/tiny]
                                [--only triggers]   (only the trigger-test recordings)
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"
GRAVITY = 9.81
WINDOW_S, MODEL_SAMPLES = 5.0, 2000
MIN_MARGIN = 0.2

# Shaking: per channel (3 Hz amplitude, 7 Hz amplitude); acc m/s^2, gyro rad/s.
SHAKE_AMPS = [(4.0, 2.0), (3.0, 1.5), (2.0, 1.0), (2.0, 0.8), (1.5, 0.6), (1.0, 0.4)]


def still_motion(t, rng):
    """[6, N]: flat on a table; white sensor noise only."""
    x = np.zeros((6, len(t)))
    x[2] = GRAVITY
    x[:3] += 0.02 * rng.standard_normal((3, len(t)))
    x[3:] += 0.002 * rng.standard_normal((3, len(t)))
    return x


def shake_component(t):
    """[6, N]: a shaking hand: ~3 Hz and ~7 Hz components with slowly drifting frequency and
    amplitude (so it is not a pure periodic signal). Zero mean, no noise."""
    x = np.zeros((6, len(t)))
    dt_s = t[1] - t[0]
    for ch, (a3, a7) in enumerate(SHAKE_AMPS):
        f3 = 3.0 + 0.2 * np.sin(2 * np.pi * 0.13 * t + ch)
        f7 = 7.0 + 0.4 * np.sin(2 * np.pi * 0.21 * t + 2 * ch)
        ph3 = 2 * np.pi * (np.cumsum(f3) - f3[0]) * dt_s      # integral of the frequency
        ph7 = 2 * np.pi * (np.cumsum(f7) - f7[0]) * dt_s
        env = 1.0 + 0.15 * np.sin(2 * np.pi * 0.3 * t + 0.5 * ch)
        x[ch] = env * (a3 * np.sin(ph3 + 0.9 * ch) + a7 * np.sin(ph7 + 1.7 * ch))
    return x


def motion(kind, fs, seconds, seed):
    t = np.arange(int(round(fs * seconds))) / fs
    x = still_motion(t, np.random.default_rng(seed))
    if kind == "shaking":
        x += shake_component(t)
    return t, x


def demo_motion(fs, seed):
    """16 s: 4 s still / 4 s shaking, twice. Sensor noise throughout; each shaking segment fades
    in and out over 0.1 s (raised cosine) so there is no step in the signal."""
    t = np.arange(int(round(16.0 * fs))) / fs
    x = still_motion(t, np.random.default_rng(seed))
    for a_s in (4.0, 12.0):
        seg = (t >= a_s) & (t < a_s + 4.0)
        ts = t[seg] - a_s
        ramp = np.clip(np.minimum(ts, 4.0 - ts) / 0.1, 0.0, 1.0)
        ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
        x[:, seg] += ramp * shake_component(ts)
    return t, x


def segments_motion(fs, seconds, shaking, seed):
    """Still motion with shaking in each (start_s, end_s) of `shaking`, faded in and out over
    0.1 s like the demo."""
    t = np.arange(int(round(seconds * fs))) / fs
    x = still_motion(t, np.random.default_rng(seed))
    for a_s, b_s in shaking:
        seg = (t >= a_s) & (t < b_s)
        ts = t[seg] - a_s
        ramp = np.clip(np.minimum(ts, (b_s - a_s) - ts) / 0.1, 0.0, 1.0)
        ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
        x[:, seg] += ramp * shake_component(ts)
    return t, x


# The trigger-test recordings: (file, seconds, shaking segments, seed).
TRIGGER_RECORDINGS = (
    ("imu_still_shake_still_100hz.csv", 24.0, ((8.0, 16.0),), 51),
    ("imu_novelty_100hz.csv", 44.0, ((12.0, 20.0), (32.0, 40.0)), 52),
)


def write_trigger_recordings(out_dir):
    for name, seconds, shaking, seed in TRIGGER_RECORDINGS:
        t, x = segments_motion(100.0, seconds, shaking, seed)
        write_csv(os.path.join(out_dir, name), t, x)
    t = np.arange(1200) / 100.0
    x = np.tile(np.array([[0.05], [-0.02], [GRAVITY], [0.001], [0.0], [-0.001]]), (1, len(t)))
    write_csv(os.path.join(out_dir, "imu_constant_100hz.csv"), t, x)


def write_csv(path, t, x):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(HEADER + "\n")
        for i in range(len(t)):
            f.write(f"{t[i]:.6f}," + ",".join(f"{v:.6f}" for v in x[:, i]) + "\n")


def read_csv(path):
    with open(path, encoding="ascii") as f:
        if f.readline().strip() != HEADER:
            raise ValueError(f"{path}: unexpected header")
        a = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    return a[:, 0], a[:, 1:].T


def resample_linear(x, n_out):
    """numpy twin of torch.nn.functional.interpolate(x[None], n_out, mode='linear',
    align_corners=False)[0]: src = max((i + 0.5) * n_in / n_out - 0.5, 0), linear between the two
    neighbours, the right neighbour clamped to the last sample."""
    n_in = x.shape[-1]
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    return x[..., i0] * (1.0 - lam) + x[..., i1] * lam


def model_window(x, fs, start_s):
    """The daemon's IMU window: 5 s starting at start_s, float32, resampled to [6, 2000]."""
    a = int(round(start_s * fs))
    n = int(round(WINDOW_S * fs))
    w = x[:, a:a + n].astype(np.float32)
    if w.shape[1] != n:
        raise ValueError("window runs past the end of the recording")
    if w.shape[1] != MODEL_SAMPLES:
        w = resample_linear(w.astype(np.float64), MODEL_SAMPLES).astype(np.float32)
    return w


def thermal_demo(seed, n=8, h=120, w=160):
    """Lepton-style centi-kelvin frames at 9 fps: an empty 20 C room for 4 frames, then a
    person (35 C) walks in from the left. uint16 [n, h, w]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w), np.uint16)
    for k in range(n):
        room = 29315 + rng.normal(0.0, 4.0, (h, w))           # 20 C +- 0.04 K sensor noise
        if k >= n // 2:
            cx = 30 + 25 * (k - n // 2)
            body = ((yy - 65) / 40.0) ** 2 + ((xx - cx) / 18.0) ** 2 < 1.0
            room = np.where(body, 30815 + rng.normal(0.0, 10.0, (h, w)), room)
        frames[k] = np.clip(np.round(room), 0, 65535).astype(np.uint16)
    return frames


def depth_demo(seed, n=4, h=192, w=256):
    """Millimetre depth frames (a RealSense-like camera at reduced size): an open corridor
    1.5-8 m deep for two frames, then a box 0.5 m in front of the camera. uint16 [n, h, w]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w), np.uint16)
    for k in range(n):
        corridor = 1500.0 + 6500.0 * (1.0 - yy / h) + rng.normal(0.0, 5.0, (h, w))
        if k >= n // 2:
            box = (yy > 30) & (yy < 170) & (xx > 50) & (xx < 210)
            corridor = np.where(box, 500.0 + rng.normal(0.0, 2.0, (h, w)), corridor)
        holes = rng.random((h, w)) < 0.01                     # sparse invalid pixels, as stereo has
        frames[k] = np.where(holes, 0, np.clip(np.round(corridor), 1, 65535)).astype(np.uint16)
    return frames


VISION_MEAN = np.array([0.48145466, 0.4578275, 0.40821073]).reshape(3, 1, 1)
VISION_STD = np.array([0.26862954, 0.26130258, 0.27577711]).reshape(3, 1, 1)
VISION_DEMO = (("01_daylight.png", "bright daylight scene"), ("02_red_ball.jpg", "red object in view"),
               ("03_night.png", "dark night scene"))


def vision_picture(kind, seed, h=240, w=320):
    """uint8 [h, w, 3]: sky over grass ("daylight"), the same at 12 % ("night"), or a red ball on
    a grey floor ("red_ball"); with a little sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    fy, fx = yy / h, xx / w
    sky = np.stack([0.45 + 0.2 * fy, 0.65 + 0.15 * fy, 0.95 - 0.1 * fy], -1)
    grass = np.stack([0.25 + 0 * fy, 0.6 + 0.1 * fx, 0.2 + 0 * fy], -1)
    img = np.where((fy < 0.55)[..., None], sky, grass)
    if kind == "night":
        img = img * 0.12
    elif kind == "red_ball":
        img = np.full((h, w, 3), 0.35)
        ball = (fx - 0.55) ** 2 + ((fy - 0.5) * h / w) ** 2 <= 0.15 ** 2
        img[ball] = [0.85, 0.08, 0.06]
    img = img + 0.01 * rng.standard_normal((h, w, 3))
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def write_vision_demo(out_dir):
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    for (name, _), kind, seed in zip(VISION_DEMO, ("daylight", "red_ball", "night"), (51, 52, 53)):
        img = Image.fromarray(vision_picture(kind, seed), "RGB")
        if name.endswith(".jpg"):
            img.save(os.path.join(out_dir, name), quality=90, subsampling="4:2:0")
        else:
            img.save(os.path.join(out_dir, name), optimize=False, compress_level=9)


def imagebind_vision(path):
    """ImageBind's load_and_transform_vision_data on one file, with Pillow alone (torchvision's
    Resize and CenterCrop call Pillow on PIL images): [1, 3, 224, 224] float32."""
    from PIL import Image
    img = Image.open(path).convert("RGB")
    w, h = img.size
    nw, nh = (224, int(224 * h / w)) if w < h else (int(224 * w / h), 224)
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = int(round((nw - 224) / 2.0)), int(round((nh - 224) / 2.0))
    a = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    x = (a.transpose(2, 0, 1) - VISION_MEAN.astype(np.float32)) / VISION_STD.astype(np.float32)
    return x[None].astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "recordings"))
    ap.add_argument("--models", default=os.path.join(REPO, "models", "tiny"))
    ap.add_argument("--refdata", default=os.environ.get("EDGEBIND_REFDATA")
                    or os.path.join(REPO, "..", "shared", "refdata"))
    ap.add_argument("--only", choices=["triggers"],
                    help="write only these recordings (the others stay byte-identical)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_trigger_recordings(args.out)
    if args.only == "triggers":
        check_triggers(args.out, args.models)
        return

    # Same seed for a kind at both rates: the 400 Hz .npy and the 200 Hz .csv are the same kind
    # of motion, not the same samples (the noise is white at each sensor rate).
    for kind, seed in (("still", 11), ("shaking", 12)):
        t, x = motion(kind, 200.0, 7.0, seed)
        write_csv(os.path.join(args.out, f"imu_{kind}_200hz.csv"), t, x)
        _, x4 = motion(kind, 400.0, 7.0, seed + 100)
        np.save(os.path.join(args.out, f"imu_{kind}_400hz.npy"), x4.astype(np.float32))
    t, x = demo_motion(200.0, 21)
    write_csv(os.path.join(args.out, "imu_demo_200hz.csv"), t, x)
    np.save(os.path.join(args.out, "thermal_demo_160x120_u16.npy"), thermal_demo(31))
    np.save(os.path.join(args.out, "depth_demo_256x192_u16.npy"), depth_demo(41))
    write_vision_demo(os.path.join(args.out, "vision_demo"))

    # sanity: our resampler equals the refdata's torch output (project convention, SPEC.md s5)
    ref200 = os.path.join(args.refdata, "imu", "imu_200hz_5s_6x1000_f32.npy")
    ref_up = os.path.join(args.refdata, "imu", "imu_200hz_to_6x2000_f32.npy")
    if os.path.exists(ref200) and os.path.exists(ref_up):
        mine = resample_linear(np.load(ref200).astype(np.float64), MODEL_SAMPLES)
        err = float(np.abs(mine - np.load(ref_up)).max())
        print(f"resample_linear vs refdata torch interpolate: max |diff| {err:.2e}")
        if err > 1e-5:
            sys.exit("resampler does not match torch.nn.functional.interpolate")

    check(args.out, args.models)


def check(out_dir, models_dir):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(models_dir, "imu.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    with open(os.path.join(models_dir, "concepts.txt"), encoding="utf-8") as f:
        labels = f.read().splitlines()
    bank = np.load(os.path.join(models_dir, "concepts.npy")).astype(np.float64)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)

    def label(window):
        e = sess.run(["embedding"], {"imu": window[None]})[0][0].astype(np.float64)
        cos = bank @ (e / np.linalg.norm(e))
        o = np.argsort(-cos)
        return labels[o[0]], float(cos[o[0]] - cos[o[1]])

    rows, ok = [], True
    csv = lambda n: read_csv(os.path.join(out_dir, n))
    npy = lambda n: np.load(os.path.join(out_dir, n)).astype(np.float64)
    for name, fs, x, want in (
            ("imu_still_200hz.csv", 200.0, csv("imu_still_200hz.csv")[1], "device at rest"),
            ("imu_shaking_200hz.csv", 200.0, csv("imu_shaking_200hz.csv")[1], "device shaking"),
            ("imu_still_400hz.npy", 400.0, npy("imu_still_400hz.npy"), "device at rest"),
            ("imu_shaking_400hz.npy", 400.0, npy("imu_shaking_400hz.npy"), "device shaking")):
        for start in (0.0, 1.0, 2.0):
            got, margin = label(model_window(x, fs, start))
            good = got == want and margin >= MIN_MARGIN
            ok &= good
            rows.append((name, f"{start:.1f}-{start + WINDOW_S:.1f} s", want, got, margin, good))
    # demo: windows covering mostly one state must get that state's label; windows across a
    # 50/50 boundary are not asserted
    t, x = csv("imu_demo_200hz.csv")
    for start in np.arange(0.0, 11.01, 1.0):
        shaking_s = sum(max(0.0, min(start + WINDOW_S, b) - max(start, a))
                        for a, b in ((4.0, 8.0), (12.0, 16.0)))
        frac = shaking_s / WINDOW_S
        want = "device shaking" if frac >= 0.6 else "device at rest" if frac <= 0.4 else None
        got, margin = label(model_window(x, 200.0, start))
        good = want is None or (got == want and margin >= MIN_MARGIN)
        ok &= good
        rows.append(("imu_demo_200hz.csv", f"{start:.1f}-{start + WINDOW_S:.1f} s "
                     f"({frac:.0%} shaking)", want or "(mixed, any)", got, margin, good))
    vision = ort.InferenceSession(os.path.join(models_dir, "vision.onnx"), opts,
                                  providers=["CPUExecutionProvider"])
    for name, want in VISION_DEMO:
        e = vision.run(["embedding"], {"vision": imagebind_vision(
            os.path.join(out_dir, "vision_demo", name))})[0][0].astype(np.float64)
        cos = bank @ (e / np.linalg.norm(e))
        o = np.argsort(-cos)
        got, margin = labels[o[0]], float(cos[o[0]] - cos[o[1]])
        good = got == want and margin >= MIN_MARGIN
        ok &= good
        rows.append((f"vision_demo/{name}", "ImageBind transform", want, got, margin, good))
    for r in rows:
        print(f"{r[0]:24s} {r[1]:28s} expected {r[2]:16s} got {r[3]:20s} margin {r[4]:.3f} "
              f"{'ok' if r[5] else 'FAIL'}")
    if not ok:
        sys.exit("recording check FAILED")
    print("recording check passed")


def check_triggers(out_dir, models_dir):
    """Prints the cosine to "device shaking" of every window of the trigger recordings, with
    the share of the window that is shaking: windows >= 60 % shaking must score above every
    window <= 40 % (the tests' thresholds lie in that gap)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(models_dir, "imu.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    with open(os.path.join(models_dir, "concepts.txt"), encoding="utf-8") as f:
        labels = f.read().splitlines()
    bank = np.load(os.path.join(models_dir, "concepts.npy")).astype(np.float64)
    text = bank[labels.index("device shaking")]
    text /= np.linalg.norm(text)
    ok = True
    for name, seconds, shaking, _ in TRIGGER_RECORDINGS:
        _, x = read_csv(os.path.join(out_dir, name))
        on, off = [], []
        for k in range(int(seconds - WINDOW_S) + 1):
            e = sess.run(["embedding"], {"imu": model_window(x, 100.0, float(k))[None]})[0][0]
            cos = float(text @ (e / np.linalg.norm(e)))
            frac = sum(max(0.0, min(k + WINDOW_S, b) - max(k, a)) for a, b in shaking) / WINDOW_S
            (on if frac >= 0.6 else off if frac <= 0.4 else []).append(cos)
            print(f"{name:32s} window {k:2d} {frac:4.0%} shaking  cos {cos:+.3f}")
        gap = min(on) - max(off)
        print(f"{name}: >=60 % windows from {min(on):+.3f}, <=40 % up to {max(off):+.3f}")
        ok &= gap > 0.05
    if not ok:
        sys.exit("trigger recording check FAILED: no threshold separates the windows")
    print("trigger recording check passed")


if __name__ == "__main__":
    main()
