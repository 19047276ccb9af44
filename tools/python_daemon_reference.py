#!/usr/bin/env python3
"""A straightforward Python daemon doing edgebind's job, for `cargo bench --bench python_reference -- --python PY`.

Four sensor threads replay the same files as the benchmarked daemon at real time (IMU CSV at its
rate, a WAV microphone, thermal and depth `.npy` cameras), cut windows (IMU 5 s / audio 2 s, hop
1 s; cameras one frame per second), preprocess them the ImageBind way in numpy (IMU linear
resampling to 2000 samples; audio torchaudio-style windowed-sinc resampling to 16 kHz + kaldi
fbank; thermal min/max AGC + antialiased bicubic resize; depth disparity + DepthNorm + resize),
run onnxruntime, match the concept bank and publish the same JSON envelope and labels message
with paho-mqtt at QoS 1. Each thread does its own work (onnxruntime releases the GIL while it
runs), the simplest way to write it.

Not part of CI. Set-up: `python3 -m venv V && V/bin/pip install numpy onnxruntime paho-mqtt`.

Driven by `edgebind bench` over stdin/stdout: prints `ready` once every sensor has had a PUBACK;
on `mark` prints `mark {json}` (windows acknowledged, inference seconds and window end → PUBACK
latencies since the previous mark); on `max` stops the sensors and replays the audio alone as
fast as it goes (printing `max-ready`); on `quit` disconnects and exits.
"""

import argparse
import csv
import json
import sys
import threading
import time
import wave

import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt

# --------------------------------------------------------------------------------------------
# Preprocessing (ImageBind-like, numpy)


def imu_tensor(window):
    """[N, 6] samples -> [6, 2000], like F.interpolate(mode='linear', align_corners=False)."""
    n = window.shape[0]
    src = np.clip((np.arange(2000) + 0.5) * n / 2000.0 - 0.5, 0, n - 1)
    x = np.arange(n)
    return np.stack([np.interp(src, x, window[:, c]) for c in range(6)]).astype(np.float32)


class SincResampler:
    """torchaudio.functional.resample's windowed sinc (hann, width 6, rolloff 0.99)."""

    def __init__(self, orig, new=16000):
        g = np.gcd(orig, new)
        self.o, self.n = orig // g, new // g
        base = min(self.o, self.n) * 0.99
        self.width = int(np.ceil(6 * self.o / base))
        k = np.arange(-self.width, self.width + self.o)
        t = (-np.arange(self.n)[:, None] / self.n + k[None, :] / self.o) * base
        t = np.clip(t, -6, 6)
        w = np.cos(t * np.pi / 12) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(t == 0, 1.0, np.sin(np.pi * t) / (np.pi * t))
        self.kernel = (s * w * base / self.o).astype(np.float32)  # [n, K]

    def __call__(self, x):
        padded = np.pad(x, (self.width, self.width + self.o))
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.kernel.shape[1])[:: self.o]
        out = (frames @ self.kernel.T).reshape(-1)
        return out[: int(np.ceil(self.n * len(x) / self.o))]


def mel_banks(bins=128, n_fft=512, sr=16000, low=20.0, high=8000.0):
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
    lo, hi = mel(low), mel(high)
    delta = (hi - lo) / (bins + 1)
    f = mel(np.arange(n_fft // 2) * sr / n_fft)
    left = lo + np.arange(bins)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    up = (f[None, :] - left) / (center - left)
    down = (right - f[None, :]) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)  # Nyquist bin weight 0


MEL = mel_banks()
HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)).astype(np.float32)


def fbank(x):
    m = 1 + (len(x) - 400) // 160
    frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::160][:m].astype(np.float32)
    frames = frames - frames.mean(axis=1, keepdims=True)
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - 0.97 * prev) * HANN
    power = np.abs(np.fft.rfft(frames, 512)) ** 2
    return np.log(np.maximum(power @ MEL.T, 1.1920929e-07))  # [frames, 128]


def audio_tensor(channel0, resampler):
    x = resampler(channel0)
    x = x - x.mean()
    spec = fbank(x).T  # [128, frames]
    spec = np.pad(spec, ((0, 0), (0, max(0, 204 - spec.shape[1]))))[:, :204]
    spec = (spec + 4.268) / 9.138
    return spec[None, None].astype(np.float32)  # [1, 1, 128, 204]


def resize_matrix(n_in, n_out):
    """Antialiased bicubic (a = -0.5) resampling matrix [n_out, n_in], Pillow-style support."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)

    def cubic(x):
        x = np.abs(x)
        a = -0.5
        return np.where(
            x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
            np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))

    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        center = (i + 0.5) * scale
        j = np.arange(max(int(center - support), 0), min(int(center + support) + 1, n_in))
        w = cubic((j + 0.5 - center) / max(scale, 1.0))
        m[i, j] = w / w.sum()
    return m


class ImageResizer:
    """Short side to 224, centre crop 224, with matrices cached per frame size."""

    def __init__(self):
        self.cache = {}

    def __call__(self, img):
        h, w = img.shape
        if (h, w) not in self.cache:
            if h <= w:
                oh, ow = 224, int(224 * w / h)
            else:
                oh, ow = int(224 * h / w), 224
            top, left = int(round((oh - 224) / 2)), int(round((ow - 224) / 2))
            self.cache[(h, w)] = (resize_matrix(h, oh)[top:top + 224],
                                  resize_matrix(w, ow)[left:left + 224])
        mh, mw = self.cache[(h, w)]
        return mh @ img.astype(np.float32) @ mw.T


def thermal_tensor(frame, resize):
    lo, hi = int(frame.min()), int(frame.max())
    if hi == lo:
        u8 = np.zeros(frame.shape, np.float32)
    else:
        u8 = ((frame.astype(np.int64) - lo) * 510 + (hi - lo)) // (2 * (hi - lo))
    out = np.clip(np.round(resize(u8.astype(np.float32))), 0, 255) / 255.0
    return out[None].astype(np.float32)


def depth_tensor(frame, resize, focal_px=518.857901, baseline_m=0.075):
    depth_m = np.clip(frame.astype(np.float32) / 1000.0, 0.01, 50.0)
    disparity = np.float32(baseline_m * focal_px) / depth_m
    norm = np.clip(disparity, 0.01, 75.0) / 75.0
    return ((resize(norm) - 0.0418) / 0.0295)[None].astype(np.float32)


# --------------------------------------------------------------------------------------------
# The daemon


class Daemon:
    def __init__(self, args):
        self.args = args
        manifest = json.load(open(f"{args.models}/manifest.json"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.intra_threads
        opts.inter_op_num_threads = 1
        self.sessions = {
            m: ort.InferenceSession(f"{args.models}/{e['file']}", opts,
                                    providers=["CPUExecutionProvider"])
            for m, e in manifest["models"].items()
        }
        self.model_name = manifest["name"]
        self.labels = open(f"{args.models}/{manifest['concepts']['labels']}").read().split("\n")
        bank = np.load(f"{args.models}/{manifest['concepts']['embeddings']}").astype(np.float32)
        self.bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
        self.lock = threading.Lock()
        self.pending = {}  # mid -> (window end ns, sensor), or None for a labels message
        self.early = {}  # mid -> PUBACK time, for acks that came before `claim` recorded the mid
        self.since_mark = {"windows": 0, "inference_s": 0.0, "puback_ms": []}
        self.acked_sensors = set()
        self.stop = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"edgebind-pyref-{time.time_ns()}")
        self.client.max_inflight_messages_set(256)
        self.client.on_publish = self.on_publish
        self.client.connect("127.0.0.1", args.broker_port)
        self.client.loop_start()

    def on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        now = time.time_ns()
        with self.lock:
            if mid not in self.pending:
                self.early[mid] = now
                return
            self._acked(self.pending.pop(mid), now)

    def _acked(self, entry, now):
        """Counts one acknowledged embedding (entry None: a labels message). Lock held."""
        if entry is None:
            return
        end_ns, sensor = entry
        self.since_mark["windows"] += 1
        self.since_mark["puback_ms"].append((now - end_ns) / 1e6)
        self.acked_sensors.add(sensor)

    def claim(self, mid, entry):
        """Records what message `mid` was. Called after `publish` returns, never with the lock
        held across `publish`: paho holds its own lock while it calls `on_publish`, which takes
        ours, so publishing under our lock deadlocks (seen at full speed)."""
        with self.lock:
            if mid in self.early:
                self._acked(entry, self.early.pop(mid))
            else:
                self.pending[mid] = entry

    def handle(self, sensor, modality, seq, start_ns, end_ns, count, make_input, ready_ns=None):
        """Embeds and publishes one window; latency counts from ready_ns (when its data was
        complete: the window end, or a camera frame's capture time)."""
        ready_ns = end_ns if ready_ns is None else ready_ns
        t0 = time.perf_counter()
        x = make_input()
        t1, c1 = time.perf_counter(), time.thread_time()
        raw = self.sessions[modality].run(None, {modality: x[None]})[0][0]
        # Inference CPU, as the Rust daemon counts it: this thread's CPU clock around the run
        # (ONNX Runtime runs on the calling thread with one intra-op thread).
        t2, c2 = time.perf_counter(), time.thread_time()
        norm = float(np.linalg.norm(raw))
        unit = raw / norm if norm > 0 else raw
        scores = self.bank @ unit
        top = np.argsort(-scores)[:3]
        labels = [{"label": self.labels[i], "score": round(float(scores[i]), 4)}
                  for i in top if scores[i] >= 0.1]
        envelope = {
            "v": 1, "device": "pyref", "sensor": sensor, "modality": modality, "seq": seq,
            "window": {"start_utc_ns": start_ns, "end_utc_ns": end_ns, "sample_count": count,
                       "gaps": 0},
            "model": {"name": self.model_name, "provider": "cpu",
                      "ort_version": ort.__version__},
            "embedding": [float(v) for v in unit], "embedding_norm": norm, "labels": labels,
            "latency": {"preprocess_ms": (t1 - t0) * 1e3, "queue_ms": 0.0,
                        "inference_ms": (t2 - t1) * 1e3,
                        "window_end_to_publish_ms": (time.time_ns() - ready_ns) / 1e6},
        }
        prefix = f"{self.args.prefix}/{sensor}"
        with self.lock:
            self.since_mark["inference_s"] += c2 - c1
        info = self.client.publish(f"{prefix}/embedding", json.dumps(envelope), qos=1)
        self.claim(info.mid, (ready_ns, sensor))
        info = self.client.publish(f"{prefix}/labels", json.dumps(
            {"v": 1, "sensor": sensor, "seq": seq, "window_end_utc_ns": end_ns,
             "labels": labels}), qos=1)
        self.claim(info.mid, None)

    def paced(self, period_s, stop):
        """Yields block capture times (UTC ns) every period_s until stop is set."""
        start = time.monotonic()
        k = 0
        while not stop.is_set():
            k += 1
            due = start + k * period_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield time.time_ns()

    def imu(self, path, stop):
        rows = list(csv.DictReader(open(path)))
        cols = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
        data = np.array([[float(r[c]) for c in cols] for r in rows], np.float32)
        rate = 1.0 / float(np.median(np.diff([float(r["t_s"]) for r in rows])))
        block, window, hop = int(round(rate * 0.02)), int(round(rate * 5)), int(round(rate))
        buf, i, seq, next_end = [], 0, 0, window
        for now in self.paced(block / rate, stop):
            for _ in range(block):
                buf.append(data[i % len(data)])
                i += 1
            if i >= next_end:
                w = np.array(buf[-window:])
                self.handle("imu", "imu", seq, now - int(5e9), now, window,
                            lambda: imu_tensor(w))
                seq += 1
                next_end += hop
                del buf[:-window]

    def read_wav(self, path):
        with wave.open(path) as f:
            rate, ch = f.getframerate(), f.getnchannels()
            pcm = np.frombuffer(f.readframes(f.getnframes()), np.int16).reshape(-1, ch)
        return rate, pcm[:, 0].astype(np.float32) / 32768.0

    def mic(self, path, stop):
        rate, x = self.read_wav(path)
        resampler = SincResampler(rate)
        block, window, hop = rate // 50, 2 * rate, rate
        buf, i, seq, next_end = [], 0, 0, window
        for now in self.paced(0.02, stop):
            idx = np.arange(i, i + block) % len(x)
            buf.append(x[idx])
            i += block
            if i >= next_end:
                w = np.concatenate(buf)[-window:]
                self.handle("mic", "audio", seq, now - int(2e9), now, window,
                            lambda: audio_tensor(w, resampler))
                seq += 1
                next_end += hop
                buf = [w]

    def camera(self, name, modality, path, fps, stop):
        frames = np.load(path)
        resize = ImageResizer()
        make = thermal_tensor if modality == "thermal" else depth_tensor
        seq, last = 0, None
        for k, now in enumerate(self.paced(1.0 / fps, stop)):
            frame = frames[k % len(frames)].copy()  # a driver hands over a fresh buffer
            if last is None or now - last >= 1e9:
                last = now
                self.handle(name, modality, seq, now, now + int(1e9 / fps), 1,
                            lambda: make(frame, resize), ready_ns=now)
                seq += 1

    def audio_max(self, path, stop):
        rate, x = self.read_wav(path)
        resampler = SincResampler(rate)
        window, hop, start, seq = 2 * rate, rate, 0, 0
        while not stop.is_set():
            with self.lock:
                waiting = len(self.pending)
            if waiting > 200:  # paho queues without bound; wait for acknowledgements
                time.sleep(0.001)
                continue
            idx = np.arange(start, start + window) % len(x)
            w = x[idx]
            now = time.time_ns()
            self.handle("mic", "audio", seq, now - int(2e9), now, window,
                        lambda: audio_tensor(w, resampler))
            seq += 1
            start += hop


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker-port", type=int, required=True)
    p.add_argument("--prefix", default="edgebind/pyref")
    p.add_argument("--models", required=True)
    p.add_argument("--imu", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--thermal", required=True)
    p.add_argument("--thermal-fps", type=float, default=9.0)
    p.add_argument("--depth", required=True)
    p.add_argument("--depth-fps", type=float, default=30.0)
    p.add_argument("--intra-threads", type=int, default=1)
    args = p.parse_args()
    d = Daemon(args)
    stop = threading.Event()
    threads = [
        threading.Thread(target=d.imu, args=(args.imu, stop), daemon=True),
        threading.Thread(target=d.mic, args=(args.audio, stop), daemon=True),
        threading.Thread(target=d.camera, args=("thermal", "thermal", args.thermal,
                                                args.thermal_fps, stop), daemon=True),
        threading.Thread(target=d.camera, args=("depth", "depth", args.depth, args.depth_fps,
                                                stop), daemon=True),
    ]
    for t in threads:
        t.start()
    while len(d.acked_sensors) < 4:
        time.sleep(0.1)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "mark":
            with d.lock:
                report, d.since_mark = d.since_mark, {"windows": 0, "inference_s": 0.0,
                                                      "puback_ms": []}
            print("mark " + json.dumps(report), flush=True)
        elif cmd == "max":
            stop.set()
            for t in threads:
                t.join()
            stop = threading.Event()
            threads = [threading.Thread(target=d.audio_max, args=(args.audio, stop), daemon=True)]
            threads[0].start()
            print("max-ready", flush=True)
        elif cmd == "quit":
            break
    stop.set()
    d.client.loop_stop()
    d.client.disconnect()


if __name__ == "__main__":
    main()
