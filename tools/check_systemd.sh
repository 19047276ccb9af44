#!/usr/bin/env bash
# Checks systemd/edgebind.service as CI does: `systemd-analyze verify` must print nothing (it
# exits 0 on unknown keys and bad values, so any output fails), and the offline security
# exposure must be at most 2.5. ExecStart must exist: the unit is checked with the paths
# pointing at a stand-in executable.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#!/bin/sh\nexit 0\n' >"$tmp/edgebind"
chmod +x "$tmp/edgebind"
sed "s|/usr/bin/edgebind|$tmp/edgebind|g" systemd/edgebind.service >"$tmp/edgebind.service"
out=$(systemd-analyze verify "$tmp/edgebind.service" 2>&1 || true)
if [ -n "$out" ]; then
  echo "check_systemd: systemd-analyze verify complained:" >&2
  echo "$out" >&2
  exit 1
fi
report=$(systemd-analyze security --offline=yes "$tmp/edgebind.service" 2>&1)
score=$(grep -oE 'Overall exposure level for .*: [0-9]+\.[0-9]+' <<<"$report" | grep -oE '[0-9]+\.[0-9]+$')
if [ -z "$score" ]; then
  echo "$report" >&2
  echo "check_systemd: no exposure score" >&2
  exit 1
fi
if awk -v s="$score" 'BEGIN { exit !(s > 2.5) }'; then
  echo "$report" >&2
  echo "check_systemd: exposure $score > 2.5" >&2
  exit 1
fi
echo "check_systemd: verify clean, exposure $score"
