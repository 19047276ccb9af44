#!/usr/bin/env python3
"""JPEG fixtures for the vision decoder tests (tests/preprocess_vision.rs): JPEGs written by
Pillow from the reference scene, and Pillow's own decode of each (lossless PNG), so the tests can
state how zune-jpeg's pixels differ from Pillow/libjpeg-turbo's on the same file.

    python3 tools/make_jpeg_fixtures.py   # needs pillow, numpy; refdata from $EDGEBIND_REFDATA
                                          # or ../shared/refdata

Writes tests/fixtures/vision/:
  rgb_640x480_q90_420.jpg   quality 90, 4:2:0 chroma (Pillow's default; also the bench's frame)
  rgb_320x240_q90_422.jpg   quality 90, 4:2:2 chroma (what MJPEG webcams send), centre of the scene
  grey_96x64_q90.jpg        a one-component (greyscale) JPEG: convert("RGB") gives R = G = B
  <name>_pillow.png         Image.open(jpg).convert("RGB") with this Pillow, as a lossless PNG
  jpeg_fixtures.json        Pillow and libjpeg-turbo versions
"""
import io
import json
import os

import numpy as np
from PIL import Image, features

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFDATA = os.environ.get("EDGEBIND_REFDATA", os.path.join(REPO, "..", "shared", "refdata"))
OUT = os.path.join(REPO, "tests", "fixtures", "vision")


def main():
    os.makedirs(OUT, exist_ok=True)
    scene = np.load(os.path.join(REFDATA, "vision", "rgb_640x480.npy"))
    grey = scene[200:264, 300:396] @ np.array([0.299, 0.587, 0.114])
    cases = [("rgb_640x480_q90_420", scene, 2), ("rgb_320x240_q90_422", scene[120:360, 160:480], 1),
             ("grey_96x64_q90", np.round(grey).astype(np.uint8), 0)]
    for name, pixels, subsampling in cases:
        buf = io.BytesIO()
        mode = "L" if pixels.ndim == 2 else "RGB"
        Image.fromarray(np.ascontiguousarray(pixels), mode).save(
            buf, "JPEG", quality=90, subsampling=subsampling)
        with open(os.path.join(OUT, name + ".jpg"), "wb") as f:
            f.write(buf.getvalue())
        decoded = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        decoded.save(os.path.join(OUT, name + "_pillow.png"), "PNG", optimize=True)
        print(f"{name}.jpg: {len(buf.getvalue())} bytes")
    meta = {"pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo")}
    with open(os.path.join(OUT, "jpeg_fixtures.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
