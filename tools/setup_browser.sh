#!/usr/bin/env bash
# Installs headless Chromium (Debian package `chromium`) for the status page tests
# (tests/status_page.rs), which load the daemon's page in a real browser and dump its DOM and a
# screenshot. Test set-up only: the daemon and its demo never need a browser. ~300 MB.
# Idempotent: installs only when no chromium is found.
set -euo pipefail

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "setup_browser: installing chromium"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null || { echo "setup_browser: chromium missing after install" >&2; exit 1; }
