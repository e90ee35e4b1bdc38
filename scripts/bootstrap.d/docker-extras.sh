#!/usr/bin/env bash
# Optional tools for the node-image tests (issue 6): Debian's LXD (a real `lxc image import` of
# the exported tarball) and docker-registry (a registry on loopback to test `pamdi image push`).
# Idempotent; about 15 s on a fresh machine, instant afterwards. Failures only skip those checks.
set -uo pipefail

[ "$(id -u)" = 0 ] || exit 0

missing=()
command -v lxd >/dev/null 2>&1 || missing+=(lxd)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap/docker-extras: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # docker.sh ran apt-get update already when it installed anything; update only if needed.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
        || { echo "bootstrap/docker-extras: install failed; LXD import / registry push tests will skip" >&2; exit 0; }
fi
# The package starts no registry without systemd, which is what we want: the test starts its own
# on a loopback port.

if command -v lxd >/dev/null 2>&1 && ! lxc info >/dev/null 2>&1; then
    echo "bootstrap/docker-extras: starting lxd (log: /var/log/pamdi-lxd.log)"
    # LXD fetches an instance-type list from the Internet at start; a dead loopback proxy keeps
    # that attempt on this machine. No `lxd init`: no bridge, no firewall rules; the test makes
    # its own dir storage pool and removes it.
    HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
        http_proxy=http://127.0.0.1:9 setsid nohup lxd --group root --logfile /var/log/pamdi-lxd.log \
        >/dev/null 2>&1 </dev/null &
    timeout 60 lxd waitready --timeout 50 || echo "bootstrap/docker-extras: lxd did not start; LXD test will skip" >&2
fi
exit 0
