"""Enter a network namespace (and optionally a cgroup), then exec a command.

``python -m orchestrator.netem.nsexec --netns NAME [--cgroup-procs FILE] -- CMD ...``

This is what ``ip netns exec`` does for the network namespace, without shelling out to ``ip``:
the process joins the cgroup first (so the command and all its threads run under the CPU quota),
then ``setns(2)`` into ``/run/netns/NAME``, then ``execvp``. Kept free of heavy imports because
it runs once per agent start.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"


def setns(name: str) -> None:
    """Move the calling process into the named network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nsexec")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--cgroup-procs", action="append", default=[],
                        help="cgroup.procs file(s) to join before exec")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given")
    for procs in args.cgroup_procs:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    setns(args.netns)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
