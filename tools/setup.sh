#!/usr/bin/env bash
# Installs what edgebind needs to build, test and run its demo on Debian 12 / Ubuntu 22.04:
# Debian packages (mosquitto, pkg-config, ALSA headers, libclang for the bindgen build of the
# v4l crate, librealsense's run-time libraries), libonnxruntime from the PyPI onnxruntime wheel
# into .ort/lib, and librealsense2 from the PyPI pyrealsense2 wheel into .realsense
# (tools/setup_realsense.sh). Nothing for the aarch64 (Jetson) cross build: tools/setup_aarch64.sh
# (run by tools/test.sh) installs that. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd: systemd-analyze for tools/check_systemd.sh; openssl: test certificates for TLS tests;
# libclang-dev: bindgen for the v4l crate (feature v4l2); libusb-1.0-0, libudev1, libpython3.11:
# what the pyrealsense2 wheel's library links against (feature realsense).
packages=(mosquitto mosquitto-clients pkg-config libasound2-dev libclang-dev python3-pip
  ca-certificates systemd openssl libusb-1.0-0 libudev1 libpython3.11)
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A system mosquitto service is not needed (tests and the demo start their own broker).
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { echo "setup: mosquitto missing" >&2; exit 1; }

bash tools/fetch_onnxruntime.sh >/dev/null
# CLIP's BPE vocabulary for the text tokenizer tests (tests/embed.rs), into .bpe.
bash tools/fetch_clip_bpe.sh >/dev/null
# librealsense2 for the realsense feature: PyPI has the wheel for x86_64 only (see the script).
if [ "$(uname -m)" = x86_64 ]; then bash tools/setup_realsense.sh >/dev/null; fi
echo "setup: ok (libonnxruntime in .ort/lib, librealsense2 in .realsense, mosquitto installed)"
