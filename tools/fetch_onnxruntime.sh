#!/usr/bin/env bash
# Fetch the CPU ONNX Runtime shared library that edgebind loads at run time (`ort` load-dynamic).
#
# Usage: tools/fetch_onnxruntime.sh [DEST_DIR]
#   DEST_DIR     where to put libonnxruntime.so.<version> (default: <repo>/.ort/lib)
#   ORT_VERSION  ONNX Runtime version (default: 1.31.1)
#
# Why a wheel: the only registry reachable from CI is PyPI, and the `onnxruntime` wheel carries the
# plain C-API library (onnxruntime/capi/libonnxruntime.so.<version>, ~24 MB wheel, CPU only).
# The wheel is picked for this machine's architecture (x86_64 or aarch64 manylinux) and CPython
# 3.11 explicitly, so the local Python version does not matter; only `python3 -m pip` is needed.
# Idempotent: if the library is already there with the size recorded in the wheel, nothing is
# downloaded. Prints the absolute path of the `libonnxruntime.so` symlink on the last line.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${script_dir}/../.ort/lib}"
mkdir -p "${dest}"
dest="$(cd "${dest}" && pwd)"

lib_name="libonnxruntime.so.${ORT_VERSION}"
member="onnxruntime/capi/${lib_name}"
size_file="${dest}/.${lib_name}.size"

case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *)
        echo "fetch_onnxruntime: unsupported architecture $(uname -m) (need x86_64 or aarch64)" >&2
        exit 1
        ;;
esac

link_and_print() {
    ln -sfn "${lib_name}" "${dest}/libonnxruntime.so"
    echo "${dest}/libonnxruntime.so"
}

# Already present with the size the wheel says it has? Then we are done.
if [[ -f "${dest}/${lib_name}" && -f "${size_file}" ]]; then
    want_size="$(cat "${size_file}")"
    have_size="$(stat -c %s "${dest}/${lib_name}")"
    if [[ "${want_size}" == "${have_size}" ]]; then
        echo "fetch_onnxruntime: ${lib_name} already present (${have_size} bytes)" >&2
        link_and_print
        exit 0
    fi
    echo "fetch_onnxruntime: ${lib_name} has ${have_size} bytes, expected ${want_size}; re-fetching" >&2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# Several manylinux tags: pip picks whichever the release was published with.
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    --platform "manylinux_2_28_${arch}" --platform "manylinux_2_27_${arch}" \
    --platform "manylinux_2_17_${arch}" --platform "manylinux2014_${arch}" \
    -d "${tmp}" "onnxruntime==${ORT_VERSION}" >&2

wheel="$(find "${tmp}" -maxdepth 1 -name "onnxruntime-${ORT_VERSION}-*.whl" | head -n 1)"
if [[ -z "${wheel}" ]]; then
    echo "fetch_onnxruntime: pip did not produce an onnxruntime ${ORT_VERSION} wheel" >&2
    exit 1
fi

# Extract the single member with Python's zipfile (no dependency on `unzip`), write atomically,
# and record the size the wheel declares so the next run can skip the download.
python3 - "${wheel}" "${member}" "${dest}/${lib_name}" "${size_file}" <<'PY'
import os, shutil, sys, zipfile
wheel, member, out, size_file = sys.argv[1:5]
with zipfile.ZipFile(wheel) as zf:
    try:
        info = zf.getinfo(member)
    except KeyError:
        sys.exit(f"fetch_onnxruntime: {member} not found in {os.path.basename(wheel)}")
    tmp_out = out + ".part"
    with zf.open(info) as src, open(tmp_out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if os.path.getsize(tmp_out) != info.file_size:
        sys.exit("fetch_onnxruntime: extracted size does not match the wheel")
    os.chmod(tmp_out, 0o755)
    os.replace(tmp_out, out)
with open(size_file, "w") as f:
    f.write(f"{info.file_size}\n")
PY

echo "fetch_onnxruntime: extracted $(basename "${wheel}") -> ${dest}/${lib_name}" >&2
link_and_print
