#!/usr/bin/env python3
"""Make tests/fixtures/models/external_data: the tiny IMU encoder saved with ONNX external data.

The graph goes to imu.onnx and every tensor of 1 kB or more to imu.onnx.data, as
tools/export_imagebind.py does for ImageBind's 2.5 GB vision encoder (small constants stay
inline: ONNX Runtime's shape inference cannot read them from a data file), with the tiny set's
reference pair and concept bank and
a manifest listing the data file's sha256, so the tests load a real external-data model through
ONNX Runtime without a multi-GB export. Needs numpy and onnx (pip install onnx numpy).
Usage: tools/make_external_data_fixture.py   (re-running gives byte-identical files)
"""
import hashlib
import json
import os
import shutil

import onnx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "models", "tiny")
OUT = os.path.join(REPO, "tests", "fixtures", "models", "external_data")
COPIED = ("imu_reference_input.npy", "imu_reference_output.npy", "concepts.txt", "concepts.npy")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    os.makedirs(OUT, exist_ok=True)
    model = onnx.load(os.path.join(TINY, "imu.onnx"))
    for name in ("imu.onnx", "imu.onnx.data"):
        if os.path.exists(os.path.join(OUT, name)):
            os.remove(os.path.join(OUT, name))
    onnx.save_model(model, os.path.join(OUT, "imu.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="imu.onnx.data")
    for name in COPIED:
        shutil.copyfile(os.path.join(TINY, name), os.path.join(OUT, name))
    with open(os.path.join(TINY, "manifest.json"), encoding="utf-8") as f:
        tiny = json.load(f)
    imu = dict(tiny["models"]["imu"])
    imu["sha256"] = sha256(os.path.join(OUT, "imu.onnx"))
    imu["external_data"] = [{"file": "imu.onnx.data",
                             "sha256": sha256(os.path.join(OUT, "imu.onnx.data"))}]
    manifest = dict(tiny, name="edgebind-tiny-external-data", models={"imu": imu})
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    for name in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, name)
        print(f"{os.path.getsize(p):8d}  {sha256(p)}  {os.path.relpath(p, REPO)}")


if __name__ == "__main__":
    main()
