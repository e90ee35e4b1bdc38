#!/usr/bin/env bash
# Docker for the node image and the docker / docker-compose backends (issue 6).
#
# Idempotent and quick when everything is there. As root: installs Debian's docker.io,
# docker-compose and debootstrap (needed), plus lxd and docker-registry (optional: a real
# `lxc image import` of the exported tarball, a registry on loopback for `pamdi image push`) in
# one apt-get run, then starts dockerd (and lxd) in the background when they do not answer
# (these machines have no systemd) and waits for them.
# The base and node images are built by the test session (tests/docker_support.py), which needs
# the project venv; the builders cache by content, so they cost nothing when up to date.
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
optional=()
command -v lxd >/dev/null 2>&1 || optional+=(lxd)
command -v docker-registry >/dev/null 2>&1 || optional+=(docker-registry)
if [ $((${#missing[@]} + ${#optional[@]})) -gt 0 ]; then
    echo "bootstrap/docker: apt-get install ${missing[*]} ${optional[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # docker.io recommends apparmor, git, ...: none is needed here.
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" "${optional[@]}" >/dev/null; then
        [ ${#missing[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        echo "bootstrap/docker: optional ${optional[*]} not installed; LXD import / push tests will skip" >&2
    fi
fi

# Any docker client on PATH will do for `docker info`.
if ! docker info >/dev/null 2>&1; then
    LOG=/var/log/pamdi-dockerd.log
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        echo "bootstrap/docker: starting dockerd (log: $LOG)"
        # dockerd starts its own containerd. setsid: it must outlive this script and not get
        # the CI shell's signals.
        setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
    fi
    ready=0
    for _ in $(seq 1 120); do
        if docker info >/dev/null 2>&1; then ready=1; break; fi
        sleep 0.5
    done
    if [ $ready = 0 ]; then
        echo "bootstrap/docker: dockerd did not come up within 60 s; last log lines:" >&2
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    echo "bootstrap/docker: dockerd ready"
fi

# LXD (optional): no `lxd init`, so no bridge and no firewall rules; the test only imports an
# image. LXD fetches an instance-type list from the Internet at start: a dead loopback proxy
# keeps that attempt on this machine. The registry package starts nothing without systemd; the
# push test runs its own on a loopback port.
if command -v lxd >/dev/null 2>&1 && ! lxc info >/dev/null 2>&1; then
    echo "bootstrap/docker: starting lxd (log: /var/log/pamdi-lxd.log)"
    HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
        http_proxy=http://127.0.0.1:9 setsid nohup lxd --group root --logfile /var/log/pamdi-lxd.log \
        >/dev/null 2>&1 </dev/null &
    timeout 60 lxd waitready --timeout 50 >/dev/null 2>&1 \
        || echo "bootstrap/docker: lxd did not start; the LXD import test will skip" >&2
fi
exit 0
