#!/usr/bin/env bash
# Fetch OpenAI CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz, MIT licence), which
# ImageBind's text tokenizer uses, for the tokenizer tests and `edgebind embed text --vocab`.
# Exported model sets carry their own copy next to text.onnx (tools/export_imagebind.py).
#
# Usage: tools/fetch_clip_bpe.sh [DEST_DIR]   (default: <repo>/.bpe)
# Source: the open-clip-torch wheel on PyPI (pure Python, ~1.5 MB, MIT), file
# open_clip/bpe_simple_vocab_16e6.txt.gz; the sha256 is pinned. Idempotent. Prints the path.
set -euo pipefail

name="bpe_simple_vocab_16e6.txt.gz"
sha="924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${script_dir}/../.bpe}"
mkdir -p "${dest}"
dest="$(cd "${dest}" && pwd)"

if [[ -f "${dest}/${name}" ]] && echo "${sha}  ${dest}/${name}" | sha256sum -c --status; then
    echo "${dest}/${name}"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
    -d "${tmp}" "open-clip-torch==3.3.0" >&2
python3 - "${tmp}" "${dest}/${name}" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/open_clip_torch-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
PY
echo "${sha}  ${dest}/${name}" | sha256sum -c --status || {
    echo "fetch_clip_bpe: ${dest}/${name} has an unexpected sha256" >&2
    exit 1
}
echo "${dest}/${name}"
