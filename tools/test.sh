#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
bash tools/setup.sh
start=$(date +%s)
cargo fmt --all -- --check
bash tools/check_systemd.sh
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
echo "test.sh: passed in $(( $(date +%s) - start )) s"
