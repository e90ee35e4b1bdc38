"""Device profiles for emulation: a CPU quota and a torch thread count per named device.

These are **emulation approximations**, not models of the real parts: a node with ``device:
xavier-nx`` gets ``cpus`` of this host's CPU time (cgroup quota) and ``threads`` torch threads, so it
computes about as much slower as the quota implies. The nominal speeds match the simulator's
estimates (``orchestrator/simulator/devices.py``): one thread at a quota of ``speed`` CPUs.
``pamdi calibrate`` measures what each profile really achieves on this host (real model blocks run
inside the quota) and stores it; the simulator can then use the measured speed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    cpus: float  # cgroup CPU quota, in CPUs of this host
    threads: int  # torch intra-op threads
    description: str


DEVICES: dict[str, DeviceProfile] = {
    "host": DeviceProfile("host", 1.0, 1, "one core of this host (the profiling reference)"),
    "xavier-nx": DeviceProfile("xavier-nx", 0.5, 1,
                               "Jetson Xavier NX (6-core Carmel @1.9 GHz), nominal 0.5 x a host core"),
    "nano": DeviceProfile("nano", 0.2, 1, "Jetson Nano (4-core Cortex-A57 @1.43 GHz), nominal 0.2 x a host core"),
    "srn": DeviceProfile("srn", 0.8, 1, "Colosseum SRN Xeon E5-2650 (CPU-only inference), nominal 0.8 x a host core"),
}


def device(name: str) -> DeviceProfile:
    try:
        return DEVICES[name]
    except KeyError:
        raise ValueError(f"unknown device {name!r}; known: {', '.join(sorted(DEVICES))}") from None


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
