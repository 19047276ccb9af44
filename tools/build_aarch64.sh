#!/usr/bin/env bash
# Builds the release binary for aarch64 Linux (Jetson, JetPack 6) on a Debian/Ubuntu x86_64
# machine, without Docker (tools/aarch64_env.sh says how), with every feature a Jetson build
# uses, and fails if the binary needs a glibc newer than JetPack 6's 2.35.
# Output: target/aarch64-unknown-linux-gnu/release/edgebind (under $CARGO_TARGET_DIR when set). Extra arguments go to cargo build.
# With Docker, `cross build --release --target aarch64-unknown-linux-gnu --features v4l2,alsa`
# builds the same in an Ubuntu 22.04 container (Cross.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/aarch64_env.sh
source tools/aarch64_env.sh

missing=$(aarch64_missing)
if [ -n "$missing" ]; then
  echo "build_aarch64.sh: missing (tools/setup_aarch64.sh installs them):" >&2
  echo "$missing" | sed 's/^/  /' >&2
  exit 1
fi

start=$(date +%s)
cargo build --release --locked --target "$AARCH64_TARGET" --no-default-features --features "$AARCH64_FEATURES" --bin edgebind "$@"
bin=$AARCH64_BIN
aarch64_glibc_gate "$bin"
echo "build_aarch64.sh: $bin ($(du -h "$bin" | cut -f1), features: $AARCH64_FEATURES, ONNX Runtime API 21)" \
  "needs: $(LC_ALL=C readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
echo "build_aarch64.sh: built in $(( $(date +%s) - start )) s"
