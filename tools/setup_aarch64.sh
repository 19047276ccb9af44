#!/usr/bin/env bash
# Installs what the aarch64 (Jetson) build, its tests under QEMU and the Debian packages need
# (tools/build_aarch64.sh, tools/test_aarch64.sh, tools/package_deb.sh; docs/deployment.md), on an
# x86_64 Debian 12 / Ubuntu 22.04 machine: adds the arm64 architecture (multiarch) to dpkg, then
# Debian's aarch64 cross gcc and binutils, the arm64 ALSA headers and libstdc++ (for the aarch64
# libonnxruntime under QEMU), user-mode QEMU, dpkg-dev (dpkg-shlibdeps for the packages'
# dependencies), and the Rust target. tools/test.sh runs it; the demo (tools/setup.sh) does not
# need any of it. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -m)" != x86_64 ]; then
  echo "setup_aarch64.sh: the cross build is set up on x86_64 machines only" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "setup_aarch64.sh: adding the arm64 architecture (multiarch) for the aarch64 cross build"
  $sudo dpkg --add-architecture arm64
fi
packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
  libasound2-dev:arm64 libstdc++6:arm64 qemu-user-static dpkg-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup_aarch64.sh: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
echo "setup_aarch64.sh: ok (cross gcc, arm64 ALSA headers and libstdc++, QEMU, Rust target)"
