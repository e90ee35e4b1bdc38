"""CPU quota per emulated node: cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, whichever the host has.

A node with ``cpus=0.5`` gets 2.5 ms of CPU time per 5 ms period for all its threads together,
which is what ``docker --cpus 0.5`` does with a 5 ms ``--cpu-period`` (the docker and compose
backends set the same quota and period, ``quota_us``): a slow device is slow because it has less CPU. Groups
live under ``<cpu hierarchy>/pamdi/<run token>/<node>`` so that cleanup finds them.

The CFS period is short (``quota_period_us``: 5 ms, longer only where the quota would drop
under the kernel's 1 ms minimum), not the kernel's and Docker's 100 ms. Measured on this 2-core
host, one torch thread, ResNet-50's first quarter (23 ms unthrottled) at 0.29 CPU: with the node
always busy, the mean pass is linear in the quota at every period (speed 0.286-0.299), but one pass
takes 77 +/- 30 ms at a 100 ms period (it runs at full speed or waits out most of a period, by
phase) against 79 +/- 5 ms at 5 ms. With idle gaps between passes, as an agent has, the unused quota
of idle periods speeds the next pass up: speed 0.44 at 100 ms, 0.35 at 10 ms, 0.31 at 5 ms. A short
period is what makes a quota a steady, load-independent slowdown that a block time / speed model
can predict. (ResNet-56 at 0.2 CPU, 5 ms blocks: 0.37 at 100 ms, 0.23 at 5 ms; no throttling
overhead showed up at 5 ms.)
``cpu_stat`` reads the throttling counters so that a run records how often each node was throttled.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROJECT_DIR = "pamdi"
PERIOD_US = 5_000  # the CFS period of a node's quota (see the module docstring)
MIN_QUOTA_US = 1_000  # the kernel refuses a smaller quota
MAX_PERIOD_US = 1_000_000  # and a longer period


def quota_period_us(cpus: float) -> int:
    """The CFS period for a quota of ``cpus``: ``PERIOD_US``, stretched where ``cpus`` x period would
    fall under the kernel's minimum quota (a 0.1-CPU node gets 10 ms)."""
    if cpus <= 0:
        raise ValueError(f"cpus must be > 0, got {cpus}")
    return min(MAX_PERIOD_US, max(PERIOD_US, math.ceil(MIN_QUOTA_US / cpus)))


def quota_us(cpus: float) -> tuple[int, int]:
    """(quota, period) in microseconds for ``cpus`` CPUs: what cgroups, ``docker --cpu-quota /
    --cpu-period`` and compose's ``cpu_quota`` / ``cpu_period`` get, so every backend throttles alike."""
    period = quota_period_us(cpus)
    return max(MIN_QUOTA_US, round(cpus * period)), period


@dataclass(frozen=True)
class CpuHierarchy:
    version: int  # 1 or 2
    root: Path  # where the cpu controller's tree is mounted

    @property
    def project(self) -> Path:
        return self.root / PROJECT_DIR


def detect() -> CpuHierarchy | None:
    """The cgroup hierarchy that carries the cpu controller, or None when there is none usable."""
    for candidate in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        controllers = candidate / "cgroup.controllers"
        with contextlib.suppress(OSError):
            if "cpu" in controllers.read_text().split():
                return CpuHierarchy(2, candidate)
    v1 = CGROUP_ROOT / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists():
        return CpuHierarchy(1, v1)
    return None


def _enable_cpu_v2(path: Path, stop: Path) -> None:
    """Enable the cpu controller in the subtree_control of every ancestor from ``stop`` down to ``path``."""
    chain = []
    p = path.parent
    while True:
        chain.append(p)
        if p == stop:
            break
        p = p.parent
    for d in reversed(chain):
        ctl = d / "cgroup.subtree_control"
        with contextlib.suppress(OSError):
            if "cpu" not in ctl.read_text().split():
                ctl.write_text("+cpu")


def create(h: CpuHierarchy, token: str, node: str, cpus: float | None) -> Path:
    """Create the node's group; ``cpus`` None = no quota (the group still tracks its processes)."""
    path = h.project / token / node
    path.mkdir(parents=True, exist_ok=True)
    if h.version == 2:
        _enable_cpu_v2(path, h.root)
    set_quota(h, path, cpus)
    return path


def set_quota(h: CpuHierarchy, path: Path, cpus: float | None) -> None:
    if h.version == 2:
        if cpus is None:
            (path / "cpu.max").write_text("max")
        else:
            quota, period = quota_us(cpus)
            (path / "cpu.max").write_text(f"{quota} {period}")
        return
    quota_file, period_file = path / "cpu.cfs_quota_us", path / "cpu.cfs_period_us"
    if cpus is None:
        quota_file.write_text("-1")
        return
    quota, period = quota_us(cpus)
    # v1 checks the quota against the current period: lift the quota first, then set both.
    quota_file.write_text("-1")
    period_file.write_text(str(period))
    quota_file.write_text(str(quota))


def cpu_stat(path: Path) -> dict[str, int]:
    """The group's ``cpu.stat`` counters (v1: nr_periods, nr_throttled, throttled_time in ns; v2:
    usage_usec, nr_periods, nr_throttled, throttled_usec, ...); {} when unreadable."""
    out: dict[str, int] = {}
    try:
        for line in (path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    except OSError:
        pass
    return out


def procs_file(path: Path) -> Path:
    return path / "cgroup.procs"


def pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in procs_file(path).read_text().split()]
    except OSError:
        return []


def remove_tree(path: Path, kill_timeout: float = 3.0) -> None:
    """Kill what still runs in the groups under ``path`` and remove them bottom-up."""
    if not path.exists():
        return
    groups = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    groups.append(path)
    for g in groups:
        for pid in pids(g):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for g in groups:
        deadline = time.monotonic() + kill_timeout
        while True:
            try:
                g.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def run_groups(h: CpuHierarchy) -> list[str]:
    """Run tokens that have a group under the project directory."""
    if not h.project.is_dir():
        return []
    return sorted(p.name for p in h.project.iterdir() if p.is_dir())
