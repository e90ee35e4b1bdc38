"""Tearing down what a run record names: its processes, namespaces, root links and cgroups.

Used by ``EmulatedNetwork.close`` for its own run and by ``pamdi cleanup`` (``cleanup.py``) for the
runs that dead orchestrators left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from orchestrator.netem import cgroups, names
from orchestrator.netem import netns as nsops


def teardown_record(rec: names.RunRecord, procs: list[subprocess.Popen] | None = None) -> list[str]:
    """Remove everything a run record names (and anything else carrying its token). Returns what was removed."""
    removed: list[str] = []
    procs = procs or []
    # 1. Processes: ours politely first (agents flush their traces on SIGTERM), then anything
    #    still living in the run's namespaces or cgroups.
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=2)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
    namespaces = sorted(set(rec.namespaces) | {n for n in nsops.list_netns() if names.token_of_netns(n) == rec.token})
    leftover = nsops.pids_in_netns(namespaces)
    for pid in rec.pids:
        if _is_ours(pid, rec.token) and pid not in leftover:
            leftover.append(pid)
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        removed.append(f"process {pid}")
    nsops.wait_gone(leftover, 3.0)
    # 2. Namespaces (their interfaces and qdiscs go with them; a veth pair dies with either end).
    for ns in namespaces:
        if nsops.delete_netns(ns):
            removed.append(f"netns {ns}")
    # 3. Root-namespace ends of control links whose peer namespace is already gone are removed
    #    with it; anything with the token left in the root namespace goes now.
    for name in nsops.root_links():
        if names.token_of_ifname(name) == rec.token:
            nsops.delete_link(None, name)
            removed.append(f"link {name}")
    # 4. cgroups.
    h = cgroups.detect()
    if h is not None:
        path = h.project / rec.token
        if path.exists():
            cgroups.remove_tree(path)
            removed.append(f"cgroup {path}")
        with contextlib.suppress(OSError):  # only succeeds when no other run has groups
            h.project.rmdir()
    rec.remove()
    return removed


def _is_ours(pid: int, token: str) -> bool:
    """Whether pid is a helper process of this run (forwarder), checked by its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"orchestrator.netem.forwarder" in argv and token.encode() in argv
