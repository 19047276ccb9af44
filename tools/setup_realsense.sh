#!/usr/bin/env bash
# Makes librealsense2 available to the `realsense` feature without a system install, from the
# PyPI `pyrealsense2` wheel (librealsense is not packaged by Debian; PyPI is reachable from CI).
#
# Usage: tools/setup_realsense.sh [DEST_DIR]      (default: <repo>/.realsense)
#   RS_VERSION  pyrealsense2 version (default 2.56.5.9235: it still writes ROS1 .bag recordings,
#               and realsense-sys 2.56.5's bindings match it; 2.59 writes only .db3)
#
# The wheel's extension module contains librealsense and exports its C API (rs2_*). This script
# unpacks the wheel into DEST/python (importable with PYTHONPATH, for tools/make_realsense_recording.py)
# and lays out DEST/lib as a library realsense-sys can link through pkg-config:
#   lib/librealsense2.so and the module's SONAME  -> the extension module
#   lib/pkgconfig/realsense2.pc                   (Libs: -L${libdir} -lrealsense2)
# The module leaves the Python C API unresolved (it never initialises Python when used from Rust,
# but the dynamic loader still binds its data symbols), so the .pc names libpython3.11 in the
# variable `edgebind_link_python`; edgebind's build.rs links it with --no-as-needed and adds an
# rpath to DEST/lib, so the binaries and tests run without LD_LIBRARY_PATH.
# Run-time needs: libusb-1.0-0, libudev1, libpython3.11 (tools/setup.sh installs them).
#
# Prints `export PKG_CONFIG_PATH=…` on the last line; idempotent.
set -euo pipefail

RS_VERSION="${RS_VERSION:-2.56.5.9235}"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${script_dir}/../.realsense}"
mkdir -p "${dest}"
dest="$(cd "${dest}" && pwd)"

# This script extracts the x86_64 wheel only. PyPI also has manylinux2014_aarch64 wheels (cp310 and
# others, since 2.55.1), but on a Jetson install librealsense2 itself (Intel's apt repository,
# which has arm64 packages, ROS, or a source build; docs/deployment.md): it ships the
# realsense2.pc that realsense-sys finds and the udev rules, and nothing here is needed.
case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    *)
        echo "setup_realsense: this script handles x86_64 only; on $(uname -m) install librealsense2" \
            "(Intel's apt repository; it provides realsense2.pc) to build with --features realsense" >&2
        exit 1
        ;;
esac
module="pyrealsense2.cpython-311-${arch}-linux-gnu.so"
stamp="${dest}/.version"

if [[ ! -f "${stamp}" || "$(cat "${stamp}")" != "${RS_VERSION}" || ! -f "${dest}/python/pyrealsense2/${module}" ]]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "${tmp}"' EXIT
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
        --platform "manylinux_2_28_${arch}" --platform "manylinux_2_17_${arch}" \
        --platform "manylinux2014_${arch}" --platform "manylinux1_${arch}" \
        -d "${tmp}" "pyrealsense2==${RS_VERSION}" >&2
    wheel="$(find "${tmp}" -maxdepth 1 -name "pyrealsense2-*.whl" | head -n 1)"
    [[ -n "${wheel}" ]] || { echo "setup_realsense: pip did not produce a pyrealsense2 wheel" >&2; exit 1; }
    rm -rf "${dest}/python"
    python3 -m zipfile -e "${wheel}" "${dest}/python"
    echo "${RS_VERSION}" >"${stamp}"
    echo "setup_realsense: unpacked $(basename "${wheel}") into ${dest}/python" >&2
fi

lib="${dest}/lib"
mkdir -p "${lib}/pkgconfig"
so="${dest}/python/pyrealsense2/${module}"
soname="$(python3 - "${so}" <<'PY'
# The SONAME from the ELF dynamic section (no binutils needed on a fresh machine).
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF"
e_shoff, = struct.unpack_from("<Q", data, 0x28)
e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
for s in sections:
    if s[1] == 6:  # SHT_DYNAMIC
        strtab = sections[s[6]]
        for off in range(s[4], s[4] + s[5], 16):
            tag, val = struct.unpack_from("<qQ", data, off)
            if tag == 14:  # DT_SONAME
                start = strtab[4] + val
                print(data[start:data.index(b"\0", start)].decode())
                sys.exit(0)
sys.exit("no SONAME")
PY
)"
ln -sfn "${so}" "${lib}/librealsense2.so"
ln -sfn "${so}" "${lib}/${soname}"
api_version="$(echo "${RS_VERSION}" | cut -d. -f1-3)"
cat >"${lib}/pkgconfig/realsense2.pc" <<EOF
# Written by tools/setup_realsense.sh: librealsense ${RS_VERSION} from the pyrealsense2 wheel.
prefix=${dest}
libdir=\${prefix}/lib
# libpython the module needs at load time (edgebind's build.rs links it; see setup_realsense.sh).
edgebind_link_python=:libpython3.11.so.1.0

Name: realsense2
Description: Intel RealSense SDK 2.0 (from the pyrealsense2 wheel)
Version: ${api_version}
Libs: -L\${libdir} -lrealsense2
Cflags:
EOF
echo "setup_realsense: librealsense ${api_version} in ${lib} (SONAME ${soname})" >&2
echo "export PKG_CONFIG_PATH=${lib}/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH} PYTHONPATH=${dest}/python"
