#!/usr/bin/env bash
# Installs what edgebind needs to build, test and run its demo on Debian 12 / Ubuntu 22.04:
# Debian packages (mosquitto, pkg-config, ALSA headers, libclang for the bindgen build of the
# v4l crate, librealsense's run-time libraries), libonnxruntime from the PyPI onnxruntime wheel
# into .ort/lib, and librealsense2 from the PyPI pyrealsense2 wheel into .realsense
# (tools/setup_realsense.sh), and on x86_64 the aarch64 cross toolchain, arm64 ALSA headers and
# QEMU for the Jetson build (see below). Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd: systemd-analyze for tools/check_systemd.sh; openssl: test certificates for TLS tests;
# libclang-dev: bindgen for the v4l crate (feature v4l2); libusb-1.0-0, libudev1, libpython3.11:
# what the pyrealsense2 wheel's library links against (feature realsense).
packages=(mosquitto mosquitto-clients pkg-config libasound2-dev libclang-dev python3-pip
  ca-certificates systemd openssl libusb-1.0-0 libudev1 libpython3.11)
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
# The aarch64 (Jetson) build, its tests under QEMU and the Debian packages (tools/build_aarch64.sh,
# tools/test_aarch64.sh, tools/package_deb.sh; docs/deployment.md), on x86_64 machines only:
# Debian's aarch64 cross gcc and binutils, the arm64 ALSA headers and libstdc++ (for the aarch64
# libonnxruntime under QEMU) from the multiarch archive, user-mode QEMU, dpkg-dev (dpkg-shlibdeps for the packages' dependencies) and the Rust target.
# EDGEBIND_SETUP_AARCH64=0 skips them.
aarch64=0
if [ "$(uname -m)" = x86_64 ] && [ "${EDGEBIND_SETUP_AARCH64:-1}" != 0 ]; then
  aarch64=1
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup: adding the arm64 architecture (multiarch) for the aarch64 cross build"
    $sudo dpkg --add-architecture arm64
  fi
  packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
    libasound2-dev:arm64 libstdc++6:arm64 qemu-user-static dpkg-dev)
fi
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

if ((aarch64)) && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

bash tools/fetch_onnxruntime.sh >/dev/null
# CLIP's BPE vocabulary for the text tokenizer tests (tests/embed.rs), into .bpe.
bash tools/fetch_clip_bpe.sh >/dev/null
# librealsense2 for the realsense feature: PyPI has the wheel for x86_64 only (see the script).
if [ "$(uname -m)" = x86_64 ]; then bash tools/setup_realsense.sh >/dev/null; fi
echo "setup: ok (libonnxruntime in .ort/lib, librealsense2 in .realsense, mosquitto installed)"
