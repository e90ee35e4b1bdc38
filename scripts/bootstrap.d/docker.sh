#!/usr/bin/env bash
# Docker for the node image and the docker / docker-compose backends (issue 6).
#
# Idempotent and quick when everything is there: installs Debian's docker.io, docker-compose and
# debootstrap when a command is missing (one apt-get update), then starts dockerd in the
# background when `docker info` does not answer (these machines have no systemd), and waits for it.
# Building the base and node images is left to the test session (tests/conftest fixtures call
# `pamdi image base/wheels/build`, which cache by content) because it needs the project venv.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && exit 0
    echo "bootstrap/docker: not root and no running Docker engine; docker tests will be skipped" >&2
    exit 0
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap/docker: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # docker.io recommends apparmor, git, ... ; none of them is needed here.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A docker client elsewhere on PATH may predate the engine: any will do for `docker info`.
if docker info >/dev/null 2>&1; then
    exit 0
fi

LOG=/var/log/pamdi-dockerd.log
if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "bootstrap/docker: starting dockerd (log: $LOG)"
    # containerd comes with docker.io; dockerd starts its own when none is running.
    # setsid: dockerd must outlive this script and not get the CI shell's signals.
    setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi
for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then
        echo "bootstrap/docker: dockerd ready"
        exit 0
    fi
    sleep 0.5
done
echo "bootstrap/docker: dockerd did not come up within 60 s; last log lines:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
