"""Enter a network namespace (and optionally a cgroup), then exec a command.

``python -m orchestrator.netem.nsexec --netns NAME [--cgroup-procs FILE] -- CMD ...``

This is what ``ip netns exec`` does for the network namespace, without shelling out to ``ip``:
the process joins the cgroup first (so the command and all its threads run under the CPU quota),
then ``setns(2)`` into ``/run/netns/NAME``, then ``execvp``. Kept free of heavy imports because
it runs once per agent start.

``--die-with-parent`` sets ``PR_SET_PDEATHSIG`` (SIGKILL) first, which survives the exec: the command
dies with the process that started it, even a SIGKILLed one. The kernel sends it when the *thread*
that forked exits, so only processes started from a long-lived thread may ask for it
(``EmulatedNetwork.spawn`` does it from the main thread only).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
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


def die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nsexec")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--cgroup-procs", action="append", default=[],
                        help="cgroup.procs file(s) to join before exec")
    parser.add_argument("--die-with-parent", action="store_true", help="SIGKILL when the parent dies")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given")
    if args.die_with_parent:
        die_with_parent()
    for procs in args.cgroup_procs:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    setns(args.netns)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
