#!/usr/bin/env python3
"""Writes a RealSense recording without a camera, for the `realsense` source's tests.

pyrealsense2's software device plays the camera: one depth sensor with a Z16 stream of known
intrinsics, read-only `depth_units` and `stereo_baseline` options (what a D400 reports), and
frames of a known pattern: a near box (0.5 m) on a far wall (3 m) that moves 4 px per frame.
With `--colour WxH` it also has an RGB camera sensor with an RGB8 stream at the same rate, each
colour frame stamped by the same device clock as the depth frame of the same instant (plus
`--colour-offset-ms`) and holding the same picture (written with `--colour-npy` as uint8
`[H, W, 3]`); `--no-depth` leaves the depth sensor out.
`rs.recorder` writes what the device streams to a `.bag` (pyrealsense2 2.56) or `.db3` (2.59+).

Usage (PYTHONPATH from tools/setup_realsense.sh):
    make_realsense_recording.py OUT.bag [--frames 30] [--width 640] [--height 480] [--fps 30]
        [--fx 383.5] [--depth-units 0.001] [--baseline-mm 50.0] [--zeros]
        [--colour 640x480] [--colour-offset-ms 0] [--colour-npy OUT.npy] [--no-depth]
Prints one JSON line: what was recorded (frames, size, fx, depth units, baseline, colour).
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


def colour_picture(width, height):
    """Row-major RGB8: red rises left to right, green top to bottom, blue is 200 except in a
    white box at the top left (no symmetry, and every channel differs)."""
    rows = []
    for y in range(height):
        g = y * 255 // max(1, height - 1)
        row = bytearray()
        for x in range(width):
            if x < width // 4 and y < height // 3:
                row += b"\xff\xff\xff"
            else:
                row += bytes((x * 255 // max(1, width - 1), g, 200))
        rows.append(bytes(row))
    return b"".join(rows)


def write_npy_rgb(path, pixels, width, height):
    """`pixels` as a NumPy `.npy` file, uint8 [height, width, 3] (format version 1.0)."""
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, 3), }" % (height, width)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
        f.write(pixels)


def add_colour_sensor(dev, width, height, fps):
    """An RGB camera sensor with one RGB8 stream, as a D400's."""
    sensor = dev.add_sensor("RGB Camera")
    intr = rs.intrinsics()
    intr.width, intr.height = width, height
    intr.ppx, intr.ppy = width / 2, height / 2
    intr.fx = intr.fy = 600.0
    intr.model = rs.distortion.inverse_brown_conrady
    intr.coeffs = [0.0] * 5
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid = rs.stream.color, 0, 1
    vs.width, vs.height, vs.fps = width, height, fps
    vs.bpp, vs.fmt, vs.intrinsics = 3, rs.format.rgb8, intr
    return sensor, sensor.add_video_stream(vs)


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
    ap.add_argument("--colour", help="add an RGB8 colour stream of this size, WxH")
    ap.add_argument("--colour-offset-ms", type=float, default=0.0)
    ap.add_argument("--colour-npy", help="write the colour picture here (.npy)")
    ap.add_argument("--no-depth", action="store_true", help="no depth sensor")
    a = ap.parse_args()

    dev = rs.software_device()
    colour = None
    if a.colour:
        cw, ch = (int(v) for v in a.colour.split("x"))
        colour = (cw, ch) + add_colour_sensor(dev, cw, ch, a.fps) + (colour_picture(cw, ch),)
        if a.colour_npy:
            write_npy_rgb(a.colour_npy, colour[4], cw, ch)
    if a.no_depth:
        record_colour_only(dev, a, colour)
        return 0
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
    if colour:
        colour[2].open(colour[3])
        colour[2].start(syncer)
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
        if colour:
            push_colour(colour, k, f.timestamp + a.colour_offset_ms)
        syncer.wait_for_frames(1000)
    sensor.stop()
    sensor.close()
    if colour:
        colour[2].stop()
        colour[2].close()
    del recorder  # closes the file
    print(json.dumps({
        "path": a.out, "frames": a.frames, "width": a.width, "height": a.height, "fps": a.fps,
        "fx": a.fx, "depth_units_m": a.depth_units, "baseline_m": a.baseline_mm / 1000.0,
        "colour": a.colour,
    }))


def push_colour(colour, k, timestamp_ms):
    """Frame `k` of the colour stream, stamped `timestamp_ms` on the device clock."""
    width, _height, sensor, profile, pixels = colour
    f = rs.software_video_frame()
    f.pixels = pixels
    f.bpp, f.stride = 3, width * 3
    f.timestamp = timestamp_ms
    f.domain = rs.timestamp_domain.hardware_clock
    f.frame_number = k
    f.profile = profile.as_video_stream_profile()
    sensor.on_video_frame(f)


def record_colour_only(dev, a, colour):
    """A recording of the colour stream alone."""
    if not colour:
        raise SystemExit("--no-depth needs --colour")
    dev.register_info(rs.camera_info.name, "edgebind software D400")
    dev.register_info(rs.camera_info.serial_number, "000000000001")
    recorder = rs.recorder(a.out, dev)
    syncer = rs.syncer()
    colour[2].open(colour[3])
    colour[2].start(syncer)
    t0_ms = time.time() * 1000.0
    start = time.monotonic()
    for k in range(a.frames):
        time.sleep(max(0.0, start + k / a.fps - time.monotonic()))
        push_colour(colour, k, t0_ms + k * 1000.0 / a.fps)
        syncer.wait_for_frames(1000)
    colour[2].stop()
    colour[2].close()
    del recorder
    print(json.dumps({"path": a.out, "frames": a.frames, "fps": a.fps, "colour": a.colour}))


if __name__ == "__main__":
    sys.exit(main())
