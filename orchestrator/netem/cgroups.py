"""CPU quota per emulated node: cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, whichever the host has.

A node with ``cpus=0.5`` gets 50 ms of CPU time per 100 ms period for all its threads together,
which is what ``docker --cpus 0.5`` does: a slow device is slow because it has less CPU. Groups
live under ``<cpu hierarchy>/pamdi/<run token>/<node>`` so that cleanup finds them.

The period stays the kernel's 100 ms: a 10 ms period (the usual 5-20 ms recommendation against
period quantisation) measured a 0.2-CPU node at 0.09 of the host instead of ~0.2 on this host
(throttling overhead on millisecond blocks), so it needs its own calibration work first. The
``quota`` device-time model calibrates each node's real speed under its quota either way.
``cpu_stat`` reads the throttling counters so that a run records how often each node was throttled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROJECT_DIR = "pamdi"
PERIOD_US = 100_000


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
        value = "max" if cpus is None else f"{max(1000, int(cpus * PERIOD_US))} {PERIOD_US}"
        (path / "cpu.max").write_text(value)
    else:
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        quota = -1 if cpus is None else max(1000, int(cpus * PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(quota))


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
