#!/usr/bin/env bash
# Idempotent set-up used by both README commands (make demo, make test) and so by .ci/run:
# system packages (when root and missing), the .venv with torch pinned, the package with its extras.
set -euo pipefail
cd "$(dirname "$0")/.."

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

# iproute2 (ip/tc) for the netns backend and for checking what pyroute2 built;
# iperf3 so users can record link measurements for `pamdi scenarios import-iperf3`.
apt_install ip iproute2 tc iproute2 iperf3 iperf3

for extra in scripts/bootstrap.d/*.sh; do
    [ -e "$extra" ] && bash "$extra"
done

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
    pip_q -e '.[orchestrator,dev]'
    touch $STAMP
fi
