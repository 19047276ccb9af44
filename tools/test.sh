#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Incremental artefacts only help rebuilds; CI builds once, and disk is not free.
export CARGO_INCREMENTAL=0
bash tools/setup.sh
# Headless Chromium for the status page tests (tests/status_page.rs).
bash tools/setup_browser.sh
# The aarch64 cross build (below) on x86_64: arm64 multiarch, cross gcc, QEMU, the Rust target.
if [ "$(uname -m)" = x86_64 ] && [ "${EDGEBIND_SETUP_AARCH64:-1}" != 0 ]; then
  bash tools/setup_aarch64.sh
fi
# Home Assistant Core for tests/home_assistant.rs and tests/ha_discovery.rs (~820 MB in .ha/,
# 1-8 min cold): installed in the background while formatting and lints run, waited for before
# the tests.
bash tools/setup_ha.sh > .ha-setup.log 2>&1 &
ha_setup=$!
start=$(date +%s)
cargo fmt --all -- --check
bash tools/check_systemd.sh
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features v4l2,alsa -- -D warnings
if ! wait "$ha_setup"; then cat .ha-setup.log >&2; echo "test.sh: tools/setup_ha.sh failed" >&2; exit 1; fi
cargo test --all-targets --locked
# The v4l2 and alsa features change only their sources and `edgebind devices`: their unit tests,
# the real v4l error paths, cpal's real capture path on an ALSA `file`-plugin PCM, and the devices
# listing of that PCM and of /dev/video*.
cargo test --locked --features v4l2,alsa --lib --test v4l2_device --test v4l2_thermal --test alsa_audio --test devices --test check_devices
# The realsense feature links librealsense2 from .realsense (tools/setup_realsense.sh, x86_64)
# or from the system.
export PKG_CONFIG_PATH="$PWD/.realsense/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
if pkg-config --exists realsense2; then
  cargo clippy --all-targets --locked --features realsense -- -D warnings
  cargo test --locked --features realsense --lib --test realsense --test realsense_colour
else
  echo "test.sh: SKIPPING the realsense feature: no librealsense2 (pkg-config realsense2)" >&2
fi
# Gross-regression check of the end-to-end figures (docs/performance.md, tools/bench_baseline.json):
# the daemon on replays of all four sensors against mosquitto for a few seconds, then audio at
# full speed; fails only beyond 10x the documented figures, so noise never fails a build (~30 s).
target/debug/edgebind bench --e2e --providers cpu --duration 5s --max-speed-duration 3s \
  --json target/bench-e2e.json > /dev/null
python3 tools/bench_regression.py target/bench-e2e.json tools/bench_baseline.json
# aarch64 (Jetson, JetPack 6), on x86_64 machines: the release cross build with its glibc <= 2.35
# gate, the unit and preprocessing-parity tests and the binary under QEMU, then the Debian
# packages for amd64 and arm64, the amd64 one installed, checked and purged (docs/deployment.md).
if [ "$(uname -m)" = x86_64 ] && [ "${EDGEBIND_SETUP_AARCH64:-1}" != 0 ]; then
  aarch64_start=$(date +%s)
  bash tools/build_aarch64.sh
  bash tools/test_aarch64.sh
  bash tools/package_deb.sh amd64 arm64
  bash tools/test_deb.sh
  echo "test.sh: aarch64 build, QEMU tests and packages: $(( $(date +%s) - aarch64_start )) s"
else
  echo "test.sh: SKIPPING the aarch64 build and the packages (not an x86_64 machine, or EDGEBIND_SETUP_AARCH64=0)" >&2
fi
echo "test.sh: target/ uses $(du -sh target | cut -f1); free: $(df -h --output=avail . | tail -1)"
echo "test.sh: passed in $(( $(date +%s) - start )) s"
