#!/usr/bin/env bash
# Installs the amd64 package on this machine with dpkg (systemd need not be running), checks what
# it set up (user, groups, directories, conffile, unit), runs `edgebind check` on the installed
# configuration as root and as the service user, runs the arm64 package's binary on the same
# configuration under QEMU, reinstalls over a local edit of the configuration, and purges the
# package again. Needs root (or sudo); run tools/package_deb.sh first. Refuses to touch an
# edgebind that was installed before.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
fail() { echo "test_deb.sh: FAILED: $*" >&2; exit 1; }

version=$(dpkg-deb -f "$(ls target/debian/edgebind_*_amd64.deb | head -1)" Version) \
  || fail "no amd64 package in target/debian (run tools/package_deb.sh)"
deb_amd64=target/debian/edgebind_${version}_amd64.deb
deb_arm64=target/debian/edgebind_${version}_arm64.deb
[ -f "$deb_arm64" ] || fail "$deb_arm64 missing (run tools/build_aarch64.sh and tools/package_deb.sh)"
if dpkg-query -W -f='${Status}' edgebind 2>/dev/null | grep -q installed; then
  fail "edgebind is already installed on this machine; this test installs and purges it"
fi

tmp=$(mktemp -d)
cleanup() {
  if dpkg-query -W -f='${Status}' edgebind 2>/dev/null | grep -q installed; then
    $sudo dpkg --purge edgebind >/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "test_deb.sh: installing $deb_amd64"
$sudo env DEBIAN_FRONTEND=noninteractive dpkg -i "$deb_amd64" </dev/null
/usr/bin/edgebind --version

# What the maintainer scripts and the package set up.
dpkg-query -W -f='${Conffiles}\n' edgebind | grep -q '^ /etc/edgebind/edgebind.toml ' \
  || fail "/etc/edgebind/edgebind.toml is not a conffile"
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd edgebind) || fail "no user edgebind"
[ "$home" = /var/lib/edgebind ] && [ "$shell" = /usr/sbin/nologin ] \
  || fail "user edgebind: home $home, shell $shell"
groups=" $(id -nG edgebind) "
for g in edgebind dialout video audio plugdev; do
  [[ $groups == *" $g "* ]] || fail "user edgebind is not in group $g (groups:$groups)"
done
for d in /var/lib/edgebind /var/cache/edgebind; do
  [ "$(stat -c '%U:%G %a' "$d")" = "edgebind:edgebind 750" ] \
    || fail "$d: $(stat -c '%U:%G %a' "$d"), expected edgebind:edgebind 750"
done
unit=$(dpkg -L edgebind | grep '/systemd/system/edgebind.service$') || fail "no unit installed"
out=$(systemd-analyze verify "$unit" 2>&1 || true)
[ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
[ "$(systemctl is-enabled edgebind 2>/dev/null || true)" = disabled ] \
  || fail "edgebind.service should be installed disabled, is: $(systemctl is-enabled edgebind 2>&1 || true)"

# The installed configuration is valid, also for the user the service runs as.
/usr/bin/edgebind check --config /etc/edgebind/edgebind.toml
$sudo runuser -u edgebind -- /usr/bin/edgebind check --config /etc/edgebind/edgebind.toml

# The arm64 package: same contents, its (stripped) binary accepts the installed configuration.
[ "$(dpkg-deb -f "$deb_arm64" Architecture)" = arm64 ] || fail "$deb_arm64 is not arm64"
diff <(dpkg-deb -c "$deb_amd64" | awk '{print $NF}' | sort) \
     <(dpkg-deb -c "$deb_arm64" | awk '{print $NF}' | sort) \
  || fail "the amd64 and arm64 packages install different files"
dpkg-deb -x "$deb_arm64" "$tmp/arm64"
qemu-aarch64-static "$tmp/arm64/usr/bin/edgebind" check --config /etc/edgebind/edgebind.toml

# An upgrade (here: the same version again) keeps a locally edited configuration.
echo "# local edit kept by test_deb.sh" | $sudo tee -a /etc/edgebind/edgebind.toml >/dev/null
$sudo env DEBIAN_FRONTEND=noninteractive dpkg -i "$deb_amd64" </dev/null >/dev/null
grep -q '^# local edit kept by test_deb.sh$' /etc/edgebind/edgebind.toml \
  || fail "reinstalling replaced the edited /etc/edgebind/edgebind.toml"

# Purge removes the program, the configuration and what the daemon wrote; the user stays.
$sudo dpkg --purge edgebind >/dev/null
for p in /usr/bin/edgebind /etc/edgebind/edgebind.toml /var/lib/edgebind /var/cache/edgebind "$unit"; do
  [ ! -e "$p" ] || fail "$p still exists after purge"
done
echo "test_deb.sh: amd64 install, check (root and edgebind), arm64 check under QEMU, conffile kept, purge: ok"
