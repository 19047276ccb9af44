# shellcheck shell=bash
# Sourced by tools/build_aarch64.sh and tools/test_aarch64.sh: how to cross-compile edgebind for
# aarch64 Linux (Jetson, JetPack 6) on a Debian/Ubuntu x86_64 machine without a container, with
# Debian's cross gcc and the arm64 multiarch -dev packages (tools/setup_aarch64.sh installs
# them). Only environment variables: nothing in .cargo/config.toml, so a
# native build on the Jetson itself is never redirected to a cross linker or to QEMU.

AARCH64_TARGET=aarch64-unknown-linux-gnu
# JetPack 6 is Ubuntu 22.04: glibc 2.35. A binary that needs a newer symbol version does not start
# there ("GLIBC_2.36 not found"), and Debian 12 links against 2.36, so every build is gated.
AARCH64_MAX_GLIBC=2.35
# What a Jetson build turns on: TLS, V4L2 thermal cameras, ALSA microphones. Serial IMUs and ONNX
# Runtime (loaded at run time) are always in. Default features are off so that the ONNX Runtime API
# level stays at 21 (no `ort-api-31`): NVIDIA's JetPack 6 onnxruntime-gpu wheels are 1.22/1.23.
# RealSense is left out: no registry offers an aarch64 librealsense2 to link against
# (docs/deployment.md).
AARCH64_FEATURES=${EDGEBIND_AARCH64_FEATURES:-tls,v4l2,alsa}

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# Test binaries run under user-mode QEMU. QEMU_LD_PREFIX must stay unset: with it, every threaded
# program hangs under Debian 12's qemu-user-static (the dynamic loader is found without it through
# the arm64 multiarch libc6 that libasound2:arm64 pulls in).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
unset QEMU_LD_PREFIX
# alsa-sys finds the arm64 libasound through pkg-config; only the arm64 .pc files may be seen.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
export PKG_CONFIG_PATH_aarch64_unknown_linux_gnu=

# Where cargo puts what it builds: $CARGO_TARGET_DIR (or $CARGO_BUILD_TARGET_DIR) when set, as
# cargo itself decides, else target/.
AARCH64_TARGET_DIR=${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-target}}
# The release binary tools/build_aarch64.sh builds.
AARCH64_BIN=$AARCH64_TARGET_DIR/$AARCH64_TARGET/release/edgebind

# Prints what is missing for the cross build, one line each; empty when everything is there.
aarch64_missing() {
  command -v aarch64-linux-gnu-gcc >/dev/null || echo "aarch64-linux-gnu-gcc (apt: gcc-aarch64-linux-gnu)"
  command -v aarch64-linux-gnu-objdump >/dev/null || echo "aarch64-linux-gnu-objdump (apt: binutils-aarch64-linux-gnu)"
  [ -f /usr/lib/aarch64-linux-gnu/pkgconfig/alsa.pc ] || echo "arm64 ALSA headers (apt: libasound2-dev:arm64 after dpkg --add-architecture arm64)"
  rustup target list --installed 2>/dev/null | grep -qx "$AARCH64_TARGET" \
    || echo "the Rust target (rustup target add $AARCH64_TARGET)"
}

# Fails unless BIN is an aarch64 ELF whose highest required GLIBC_ symbol version is at most
# AARCH64_MAX_GLIBC; names the symbols that are too new.
aarch64_glibc_gate() {
  local bin=$1 max=${2:-$AARCH64_MAX_GLIBC} machine highest too_new
  machine=$(LC_ALL=C readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
  if [ "$machine" != "AArch64" ]; then
    echo "glibc gate: $bin is not an aarch64 binary (machine: ${machine:-unknown})" >&2
    return 1
  fi
  highest=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  if [ -z "$highest" ]; then
    echo "glibc gate: $bin requires no GLIBC_ symbol version (not a dynamically linked glibc binary?)" >&2
    return 1
  fi
  if [ "$(printf '%s\n%s\n' "$highest" "$max" | sort -V | tail -1)" != "$max" ]; then
    # objdump -T prints "(GLIBC_2.36) arc4random" (or without parentheses for a default version).
    too_new=$(aarch64-linux-gnu-objdump -T "$bin" \
      | sed -n 's/.*[( ]GLIBC_\([0-9][0-9.]*\)[) ] *\([^ ]*\)$/\1 \2/p' \
      | while read -r v sym; do
          [ "$(printf '%s\n%s\n' "$v" "$max" | sort -V | tail -1)" = "$max" ] || echo "$sym@GLIBC_$v"
        done | sort -u | tr '\n' ' ')
    echo "glibc gate: $bin needs GLIBC_$highest > $max (JetPack 6 / Ubuntu 22.04): $too_new" >&2
    return 1
  fi
  echo "glibc gate: $bin needs at most GLIBC_$highest (limit $max): ok"
}
