#!/usr/bin/env bash
# Idempotent set-up used by both README commands, and so by .ci/run:
#   bash scripts/bootstrap.sh          (make demo)  iproute2 when missing (root), the .venv with
#                                       torch==2.13.0 and the package with its orchestrator extra;
#   bash scripts/bootstrap.sh --test   (make test)  that, plus the dev extra (pytest, ruff, the
#                                       Hugging Face GPT-2 reference) and the services the tests use:
#                                       iperf3, scripts/bootstrap.d/*.sh (Docker, docker-compose,
#                                       LXD, a loopback registry, OpenSSH, tcpdump).
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0
[ "${1:-}" = "--test" ] && TEST=1

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.pamdi-installed

apt_install() {
    # Install Debian packages only when a command they provide is missing; needs root.
    local missing=()
    while [ $# -gt 0 ]; do
        local cmd=$1 pkg=$2; shift 2
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: missing ${missing[*]} and not root; tests needing them will be skipped" >&2
        return 0
    fi
    echo "bootstrap: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# iproute2 (ip/tc) for the netns backend and for checking what pyroute2 built.
apt_install ip iproute2 tc iproute2

if [ $TEST = 1 ]; then
    # iperf3 so users (and the tests' fixtures) can record link measurements for
    # `pamdi scenarios import-iperf3`; then the services the test suite runs for real.
    apt_install iperf3 iperf3
    for extra in scripts/bootstrap.d/*.sh; do
        [ -e "$extra" ] && bash "$extra"
    done
fi

# pip quietly, minus the host's notes about configured local indexes that do not exist.
pip_q() {
    local noise='is ignored: it is neither'
    "$VENV/bin/pip" install -q --disable-pip-version-check "$@" \
        > >(grep -v "$noise" || true) 2> >(grep -v "$noise" >&2 || true)
}

if [ ! -x $VENV/bin/python ]; then
    $PY -m venv $VENV
fi
# Re-install when the project metadata changed since the last install.
if [ ! -f $STAMP ] || [ pyproject.toml -nt $STAMP ]; then
    pip_q 'torch==2.13.0'
    pip_q -e '.[orchestrator]'
    touch $STAMP
fi
if [ $TEST = 1 ] && { [ ! -f $STAMP.dev ] || [ pyproject.toml -nt $STAMP.dev ]; }; then
    pip_q -e '.[orchestrator,dev]'
    touch $STAMP.dev
fi
