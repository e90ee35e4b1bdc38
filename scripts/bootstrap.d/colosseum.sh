#!/usr/bin/env bash
# Colosseum tests (tests/test_colosseum*.py) run real OpenSSH servers inside network namespaces
# the tests create: Debian's openssh-server provides /usr/sbin/sshd; tcpdump captures the SRNs'
# radio interface during `colosseum run` (as SCOPE does on Colosseum). The package's own service is
# neither enabled nor started here (the tests start private sshd instances with their own config
# files under a temp dir); the machine's real sshd configuration is left as it is.
# Idempotent: does nothing when sshd is already installed. Needs root; skipped otherwise.
set -euo pipefail

if [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null 2>&1 && command -v tcpdump >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "bootstrap.d/colosseum.sh: openssh-server/tcpdump missing and not root; Colosseum SSH tests skip" >&2
    exit 0
fi
echo "bootstrap.d/colosseum.sh: apt-get install openssh-server tcpdump"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101 keeps the package's postinst from starting a system-wide sshd (CI containers, dev hosts).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends openssh-server openssh-client tcpdump >/dev/null
if [ "$created_policy" = 1 ]; then
    rm -f "$policy"
fi
