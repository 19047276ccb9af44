#!/usr/bin/env python3
"""Writes a RealSense recording without a camera, for the `realsense` source's tests.

pyrealsense2's software device plays the camera: one depth sensor with a Z16 stream of known
intrinsics, read-only `depth_units` and `stereo_baseline` options (what a D400 reports), and
frames of a known pattern: a near box (0.5 m) on a far wall (3 m) that moves 4 px per frame.
`rs.recorder` writes what the device streams to a `.bag` (pyrealsense2 2.56) or `.db3` (2.59+).

Usage (PYTHONPATH from tools/setup_realsense.sh):
    make_realsense_recording.py OUT.bag [--frames 30] [--width 640] [--height 480] [--fps 30]
        [--fx 383.5] [--depth-units 0.001] [--baseline-mm 50.0] [--zeros]
Prints one JSON line: what was recorded (frames, size, fx, depth units, baseline).
"""

import argparse
import json
import sys
import time

import pyrealsense2 as rs


def depth_frame(k, width, height, depth_units, zeros):
    """Row-major little-endian uint16 depth units: a 0.5 m box on a 3 m wall, moving right."""
    if zeros:
        return bytes(width * height * 2)
    near = round(0.5 / depth_units)
    far = round(3.0 / depth_units)
    x0, x1 = width * 15 // 64 + 4 * k, width * 49 // 64 + 4 * k
    y0, y1 = height * 5 // 24, height * 19 // 24
    row_far = far.to_bytes(2, "little") * width
    row_box = (
        far.to_bytes(2, "little") * x0
        + near.to_bytes(2, "little") * (min(x1, width) - x0)
        + far.to_bytes(2, "little") * (width - min(x1, width))
    )
    return b"".join(row_box if y0 <= y < y1 else row_far for y in range(height))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--fx", type=float, default=383.5)
    ap.add_argument("--depth-units", type=float, default=0.001)
    ap.add_argument("--baseline-mm", type=float, default=50.0)
    ap.add_argument("--zeros", action="store_true", help="every pixel 0 (no depth)")
    a = ap.parse_args()

    dev = rs.software_device()
    sensor = dev.add_sensor("Depth")
    intr = rs.intrinsics()
    intr.width, intr.height = a.width, a.height
    intr.ppx, intr.ppy = a.width / 2, a.height / 2
    intr.fx = intr.fy = a.fx
    intr.model = rs.distortion.brown_conrady
    intr.coeffs = [0.0] * 5
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid = rs.stream.depth, 0, 0
    vs.width, vs.height, vs.fps = a.width, a.height, a.fps
    vs.bpp, vs.fmt, vs.intrinsics = 2, rs.format.z16, intr
    profile = sensor.add_video_stream(vs)
    sensor.add_read_only_option(rs.option.depth_units, a.depth_units)
    sensor.add_read_only_option(rs.option.stereo_baseline, a.baseline_mm)
    dev.register_info(rs.camera_info.name, "edgebind software D400")
    dev.register_info(rs.camera_info.serial_number, "000000000001")

    recorder = rs.recorder(a.out, dev)
    syncer = rs.syncer()
    sensor.open(profile)
    sensor.start(syncer)
    t0_ms = time.time() * 1000.0
    start = time.monotonic()
    for k in range(a.frames):
        # The recording stores arrival times and playback is paced by them: push in real time.
        time.sleep(max(0.0, start + k / a.fps - time.monotonic()))
        f = rs.software_video_frame()
        f.pixels = depth_frame(k, a.width, a.height, a.depth_units, a.zeros)
        f.bpp, f.stride = 2, a.width * 2
        f.timestamp = t0_ms + k * 1000.0 / a.fps
        f.domain = rs.timestamp_domain.hardware_clock
        f.frame_number = k
        f.profile = profile.as_video_stream_profile()
        f.depth_units = a.depth_units
        sensor.on_video_frame(f)
        syncer.wait_for_frames(1000)
    sensor.stop()
    sensor.close()
    del recorder  # closes the file
    print(json.dumps({
        "path": a.out, "frames": a.frames, "width": a.width, "height": a.height, "fps": a.fps,
        "fx": a.fx, "depth_units_m": a.depth_units, "baseline_m": a.baseline_mm / 1000.0,
    }))


if __name__ == "__main__":
    sys.exit(main())
