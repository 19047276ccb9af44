#!/usr/bin/env bash
# Runs edgebind's aarch64 build under user-mode QEMU (qemu-aarch64-static) on an x86_64 machine:
# the unit tests of every pure module (parsers, windows, preprocessing, concept matching,
# payloads; with the v4l2 and alsa features) and the preprocessing parity tests against the
# ImageBind reference data (../shared/refdata or $EDGEBIND_REFDATA, same tolerances as on x86),
# then the release binary's --version and `check` on the shipped configurations, one embedding
# through the aarch64 ONNX Runtime compared with x86, and a self-test of the glibc gate. Needs
# a private mount namespace (root, or unprivileged user namespaces; see below). Run
# tools/build_aarch64.sh first (its artefacts are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/aarch64_env.sh
source tools/aarch64_env.sh

missing=$(aarch64_missing)
command -v qemu-aarch64-static >/dev/null || missing+=$'\nqemu-aarch64-static (apt: qemu-user-static)'
if [ -n "${missing//$'\n'/}" ]; then
  echo "test_aarch64.sh: missing (tools/setup_aarch64.sh installs them):" >&2
  echo "$missing" | sed '/^$/d; s/^/  /' >&2
  exit 1
fi

start=$(date +%s)
# The release profile, so that the dependencies tools/build_aarch64.sh compiled are reused (a
# debug-profile build would compile all of them again for aarch64). Tests that start an aarch64
# child process cannot run here (no binfmt_misc registration): the daemon's own end-to-end
# tests stay on x86; the binary is exercised directly below.
# Skipped: one wall-clock test (a V4L2 capture loop must stop within a second), which QEMU's
# emulation speed on a loaded machine may not meet; it runs natively on x86.
cargo test --release --locked --target "$AARCH64_TARGET" --no-default-features --features "$AARCH64_FEATURES" \
  --lib --test preprocess_audio --test preprocess_depth --test preprocess_thermal \
  -- --skip cancellation_is_seen_promptly_while_waiting_or_backing_off
tests_done=$(date +%s)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$AARCH64_BIN
[ -x "$bin" ] || { echo "test_aarch64.sh: $bin missing: run tools/build_aarch64.sh first" >&2; exit 1; }
qemu-aarch64-static "$bin" --version
for cfg in config/edgebind.toml config/demo.toml; do
  qemu-aarch64-static "$bin" check --config "$cfg"
done

# ONNX Runtime on aarch64: the binary loads PyPI's aarch64 CPU library and embeds an IMU
# recording with the stand-in encoder; the embedding must match the x86 build's within float
# noise (NEON and AVX kernels sum in different orders). ONNX Runtime's CPU detection (cpuinfo)
# parses /proc/cpuinfo, which user-mode QEMU 7.2 passes through from the x86 host, and crashes
# on it; in a private mount namespace /proc/cpuinfo is replaced by a Jetson Orin's (Cortex-A78AE).
ort_version=1.31.1
ort_dir=.ort/lib-aarch64
ort_lib=$ort_dir/libonnxruntime.so.$ort_version
if [ ! -f "$ort_lib" ]; then
  mkdir -p "$ort_dir/wheel"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
    --python-version 3.11 "onnxruntime==$ort_version" -d "$ort_dir/wheel"
  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[3], "wb").write(z.read(sys.argv[2]))' \
    "$(ls "$ort_dir"/wheel/onnxruntime-"$ort_version"-*.whl)" "onnxruntime/capi/libonnxruntime.so.$ort_version" "$ort_lib.part"
  mv "$ort_lib.part" "$ort_lib"
  rm -rf "$ort_dir/wheel"
fi
for cpu in 0 1 2 3; do
  printf 'processor\t: %s\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' "$cpu"
done >"$tmp/cpuinfo"
# Any x86 build of the binary will do (no fast-math: optimisation does not change the floats).
x86_bin=""
for b in target/debug/edgebind target/release/edgebind; do [ -x "$b" ] && x86_bin=$b && break; done
if [ -z "$x86_bin" ]; then cargo build --locked --bin edgebind && x86_bin=target/debug/edgebind; fi
input=tests/fixtures/recordings/imu_shaking_400hz.npy
"$x86_bin" embed imu "$input" --rate-hz 400 --model models/tiny/imu.onnx -o "$tmp/x86.npy" 2>/dev/null
# As root a mount namespace needs nothing else; otherwise a user namespace provides the right.
unshare_args=(--mount)
[ "$(id -u)" = 0 ] || unshare_args+=(--map-root-user)
# shellcheck disable=SC2016 # $1 and $@ belong to the inner shell
unshare "${unshare_args[@]}" sh -c 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"' sh "$tmp/cpuinfo" \
  env ORT_DYLIB_PATH="$ort_lib" qemu-aarch64-static "$bin" \
  embed imu "$input" --rate-hz 400 --model models/tiny/imu.onnx -o "$tmp/arm.npy"
python3 - "$tmp/x86.npy" "$tmp/arm.npy" <<'PY'
import ast, struct, sys

def load(path):
    b = open(path, "rb").read()
    assert b[:6] == b"\x93NUMPY", path
    (hlen, off) = (struct.unpack("<H", b[8:10])[0], 10) if b[6] == 1 else (struct.unpack("<I", b[8:12])[0], 12)
    h = ast.literal_eval(b[off:off + hlen].decode("latin1"))
    assert h["descr"] == "<f4" and not h["fortran_order"], (path, h)
    data = b[off + hlen:]
    return h["shape"], struct.unpack("<%df" % (len(data) // 4), data)

(sx, x), (sa, a) = load(sys.argv[1]), load(sys.argv[2])
assert sx == sa == (1, 1024), (sx, sa)
diff = max(abs(p - q) for p, q in zip(x, a))
scale = max(abs(p) for p in x)
print(f"test_aarch64.sh: aarch64 vs x86 IMU embedding: max |diff| {diff:.3g} (max |x| {scale:.3g})")
sys.exit(0 if diff <= 1e-4 * scale else "aarch64 and x86 embeddings differ beyond 1e-4 relative")
PY

# The gate must refuse a binary that needs a newer glibc: arc4random is GLIBC_2.36 (Debian 12's
# glibc has it, JetPack 6's 2.35 does not).
printf '#include <stdlib.h>\nint main(void) { return (int)(arc4random() & 1u); }\n' >"$tmp/new.c"
aarch64-linux-gnu-gcc -o "$tmp/new" "$tmp/new.c"
if aarch64_glibc_gate "$tmp/new" 2>"$tmp/gate.err"; then
  echo "test_aarch64.sh: the glibc gate accepted a binary needing GLIBC_2.36" >&2
  exit 1
fi
grep -q 'arc4random@GLIBC_2.36' "$tmp/gate.err" || { cat "$tmp/gate.err" >&2; exit 1; }
echo "test_aarch64.sh: glibc gate refuses a GLIBC_2.36 binary: ok"
echo "test_aarch64.sh: tests under QEMU $((tests_done - start)) s (build included), binary checks $(( $(date +%s) - tests_done )) s"
