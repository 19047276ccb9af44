#!/usr/bin/env bash
# Installs a real Home Assistant Core for the Home Assistant tests (tests/home_assistant.rs,
# tests/common/ha.rs) into a virtualenv in <repo>/.ha/venv (gitignored, like .ort and .realsense).
#
# Usage: tools/setup_ha.sh [DEST_DIR]     (default: <repo>/.ha)
#   HA_PYTHON  a Python 3.13 interpreter to build the venv from (default: pyenv's 3.13.0,
#              installed with `pyenv install` when missing)
#
# Why these versions: homeassistant 2025.4.4 is the newest release that accepts Python 3.13.0
# (2025.5+ needs >= 3.13.2), and device-based MQTT discovery needs >= 2024.11. pip is given HA's
# own package_constraints.txt (from the HA wheel): without it pip picks newer bleak, anyio, h11
# and async-timeout that break HA. paho-mqtt (the mqtt integration's requirement) and the frontend
# (without it HA boots into recovery mode and never loads mqtt) are installed up front, because
# the tests start HA with --skip-pip and nothing may be downloaded at start. A few dependencies
# are sdists: gcc is needed (installed with apt-get when missing). ~820 MB.
#
# Idempotent: .ha/installed records what was installed and is written last; when it matches,
# nothing is done. A partial install (no stamp) is removed and redone.
set -euo pipefail

HA_VERSION=2025.4.4
FRONTEND_VERSION=20250411.0
PAHO_VERSION=2.1.0
PY_VERSION=3.13.0

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${script_dir}/../.ha}"
mkdir -p "${dest}"
dest="$(cd "${dest}" && pwd)"
venv="${dest}/venv"
stamp="${dest}/installed"
log="${dest}/install.log"
want="homeassistant==${HA_VERSION} home-assistant-frontend==${FRONTEND_VERSION} paho-mqtt==${PAHO_VERSION}"
start=$(date +%s)

say() { echo "setup_ha: $*" >&2; }

if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" && -x "${venv}/bin/hass" ]]; then
    say "Home Assistant ${HA_VERSION} already installed in ${venv}"
    exit 0
fi

# The interpreter: HA_PYTHON, else pyenv's 3.13.0 (installed when missing).
python="${HA_PYTHON:-}"
if [[ -z "${python}" ]]; then
    pyenv_bin="$(command -v pyenv || true)"
    [[ -n "${pyenv_bin}" || ! -x "${HOME}/.pyenv/bin/pyenv" ]] || pyenv_bin="${HOME}/.pyenv/bin/pyenv"
    if [[ -z "${pyenv_bin}" ]]; then
        say "needs Python ${PY_VERSION} from pyenv, but pyenv is not installed;" \
            "set HA_PYTHON to a Python 3.13 interpreter"
        exit 1
    fi
    python="$("${pyenv_bin}" root)/versions/${PY_VERSION}/bin/python3"
    if [[ ! -x "${python}" ]]; then
        say "installing Python ${PY_VERSION} with pyenv (builds from source, several minutes)"
        if ! "${pyenv_bin}" install --skip-existing "${PY_VERSION}" >"${log}" 2>&1; then
            tail -n 20 "${log}" >&2
            say "pyenv could not install Python ${PY_VERSION} (log: ${log}); install it," \
                "or set HA_PYTHON to a Python 3.13 interpreter"
            exit 1
        fi
    fi
fi
if ! "${python}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    say "${python} is not a Python 3.13 interpreter (Home Assistant ${HA_VERSION} needs 3.13)"
    exit 1
fi

if ! command -v gcc >/dev/null; then
    say "installing gcc (a few of Home Assistant's dependencies are built from source)"
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
fi

rm -rf "${venv}" "${stamp}"
say "creating a venv with $("${python}" --version) in ${venv}"
"${python}" -m venv "${venv}"
pip=("${venv}/bin/python" -m pip --disable-pip-version-check --no-input)

# What pip is doing, from its log.
pip_phase() {
    if grep -q '^Installing collected packages' "${log}"; then
        echo "unpacking the packages into the venv"
    elif grep -q '^Building wheels' "${log}"; then
        echo "compiling the sdists ($(grep '^Building wheels' "${log}" | cut -d: -f2 | xargs))"
    else
        echo "$(grep -c '^Collecting' "${log}" || true) packages downloaded"
    fi
}

# Runs a pip command with its output in the log, printing a progress line every 15 s; on failure
# the log's tail.
run_pip() {
    local what="$1"
    shift
    say "${what}"
    "${pip[@]}" "$@" >>"${log}" 2>&1 &
    local pid=$! step_start
    step_start=$(date +%s)
    while kill -0 "${pid}" 2>/dev/null; do
        for _ in $(seq 15); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "${pid}" 2>/dev/null; then
            say "  ... $(($(date +%s) - step_start)) s: $(pip_phase)"
        fi
    done
    if ! wait "${pid}"; then
        tail -n 30 "${log}" >&2
        say "failed: ${what} (whole log: ${log})"
        exit 1
    fi
}

: >"${log}"
# HA's pins are in the wheel: fetch it alone first and read them from it.
wheel_dir="${dest}/wheel"
rm -rf "${wheel_dir}"
run_pip "downloading homeassistant ${HA_VERSION} for its pinned constraints" \
    download --progress-bar off --no-deps --only-binary=:all: -d "${wheel_dir}" "homeassistant==${HA_VERSION}"
wheel="$(find "${wheel_dir}" -maxdepth 1 -name "homeassistant-${HA_VERSION}-*.whl" | head -n 1)"
[[ -n "${wheel}" ]] || { say "pip did not produce the homeassistant ${HA_VERSION} wheel"; exit 1; }
constraints="${dest}/package_constraints.txt"
"${python}" - "${wheel}" "${constraints}" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:3]
with zipfile.ZipFile(wheel) as zf:
    data = zf.read("homeassistant/package_constraints.txt")
with open(out, "wb") as f:
    f.write(data)
PY

run_pip "installing homeassistant ${HA_VERSION}, home-assistant-frontend ${FRONTEND_VERSION} and paho-mqtt ${PAHO_VERSION} with HA's constraints (~820 MB; 1.5 min with pip's cache, 4-8 min cold on a busy 2-core machine)" \
    install --progress-bar off -c "${constraints}" "${wheel}" \
    "home-assistant-frontend==${FRONTEND_VERSION}" "paho-mqtt==${PAHO_VERSION}"
rm -rf "${wheel_dir}"

"${venv}/bin/hass" --version >/dev/null
echo "${want}" >"${stamp}"
say "installed Home Assistant ${HA_VERSION} in ${venv} ($(du -sh "${venv}" | cut -f1)) in $(($(date +%s) - start)) s"
