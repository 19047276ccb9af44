#!/usr/bin/env bash
# Builds edgebind's Debian packages with cargo-deb (pinned below; installed with
# `cargo install --locked` when missing): tools/package_deb.sh [amd64] [arm64] (default: both).
#   amd64: cargo-deb builds the release binary for this machine (features from
#          [package.metadata.deb] in Cargo.toml).
#   arm64: packages target/aarch64-unknown-linux-gnu/release/edgebind, which
#          tools/build_aarch64.sh builds and gates (glibc <= 2.35); build it first.
# Output: target/debian/edgebind_<version>-1_<arch>.deb. What the packages contain and do:
# Cargo.toml [package.metadata.deb], debian/postinst, debian/postrm, docs/deployment.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
archs=("$@")
if ((${#archs[@]} == 0)); then archs=(amd64 arm64); fi

if [ "$(cargo deb --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_DEB_VERSION" ]; then
  echo "package_deb.sh: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
fi

# The configuration installed as /etc/edgebind/edgebind.toml: config/edgebind.toml (every option,
# documented) with its repository-relative paths pointed at the installed layout. Any relative
# path left over would resolve against /etc/edgebind and is refused here.
mkdir -p target/deb-assets target/debian
{
  echo "# Installed by the edgebind Debian package from config/edgebind.toml. Edit this file (it is"
  echo "# a conffile: upgrades keep your changes), then: edgebind check --config /etc/edgebind/edgebind.toml"
  echo "# docs/deployment.md (/usr/share/doc/edgebind/deployment.md) walks through a Jetson set-up."
  echo "# The stand-in models and demo recordings referenced below live in /usr/share/edgebind."
  echo "#"
  sed -e 's|"\.\./models/tiny"|"/usr/share/edgebind/models/tiny"|' \
      -e 's|"\.\./tests/fixtures/recordings/|"/usr/share/edgebind/recordings/|' \
      config/edgebind.toml
} >target/deb-assets/edgebind.toml
if grep -nE '^[^#]*"\.\.?/' target/deb-assets/edgebind.toml; then
  echo "package_deb.sh: config/edgebind.toml has relative paths the package does not map (above)" >&2
  exit 1
fi

for arch in "${archs[@]}"; do
  case $arch in
    amd64)
      [ "$(dpkg --print-architecture)" = amd64 ] || { echo "package_deb.sh: amd64 builds on an amd64 machine only" >&2; exit 1; }
      cargo deb --output target/debian/ -- --locked
      ;;
    arm64)
      # shellcheck source=tools/aarch64_env.sh
      source tools/aarch64_env.sh
      bin=target/$AARCH64_TARGET/release/edgebind
      [ -x "$bin" ] || { echo "package_deb.sh: $bin missing: run tools/build_aarch64.sh first" >&2; exit 1; }
      # Gate again: the package must never carry a binary that JetPack 6 cannot start.
      aarch64_glibc_gate "$bin"
      cargo deb --no-build --target "$AARCH64_TARGET" --output target/debian/
      ;;
    *)
      echo "package_deb.sh: unknown architecture $arch (amd64 or arm64)" >&2
      exit 1
      ;;
  esac
done
ls -l target/debian/*.deb
