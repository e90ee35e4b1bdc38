"""Devices under the ``quota`` model: a CPU quota and a torch thread count per node, and calibration.

These are **emulation approximations**, not models of the real parts: a node with ``device:
xavier-nx`` gets ``cpus`` of this host's CPU time (cgroup quota) and its device's ``threads`` torch
threads (the one table: ``orchestrator/devices.py``), so it computes about as much slower as the
quota implies. ``pamdi calibrate`` measures what each device really achieves on this host (real
model blocks run inside the quota) and stores it; the simulator can then use the measured speed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator.devices import DEVICES


def calibration_path() -> Path:
    """Where ``pamdi calibrate`` stores measured speeds (``$PAMDI_CALIBRATION`` overrides)."""
    default = Path.home() / ".config" / "pamdi" / "calibration.json"
    return Path(os.environ.get("PAMDI_CALIBRATION", default))


def load_calibration(path: Path | None = None) -> dict[str, float]:
    """Measured speed per device name ({} when not calibrated yet)."""
    p = path or calibration_path()
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v["speed"]) for k, v in data.get("devices", {}).items()}


def node_quota(node_speed: float, threads: int, device_name: str | None) -> tuple[float, int]:
    """(cpus, threads) for a spec node: ``speed`` CPUs per thread, with its device's thread count.

    For a device at its nominal speed that is the device's ``cpus``; a stretched run (speed / k,
    ``orchestrator/timescale.py``) gets ``cpus / k``, and an explicit ``speed`` wins over the device
    as it does in the simulator."""
    if device_name is not None and device_name in DEVICES:
        threads = DEVICES[device_name].threads
    return node_speed * threads, threads
