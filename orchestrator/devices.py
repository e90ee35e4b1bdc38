"""Named devices: one table of what a spec's ``device: NAME`` means, for every part of pamdi.

A spec node may say ``device: xavier-nx`` instead of a ``speed``; an explicit ``speed`` wins. Each
entry gives the device's compute speed relative to one core of the host the shipped profiles were
measured on (the simulator, the policies' views and the ``profile`` device-time model scale block
times by it), and the torch thread count its agent runs with (the ``quota`` model gives a node
``speed x threads`` CPUs of this host: ``orchestrator/netem/devices.py``).

These are documented estimates, not measurements (no such device is reachable here): relative
single-stream CPU inference throughput against one core of the profiling host, from published
per-core performance of the parts. Replace them with calibrated numbers (profile the same model on
the device, divide the times; ``pamdi calibrate`` measures what a quota achieves) when you have the
hardware.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.spec import Node


@dataclass(frozen=True)
class Device:
    name: str
    speed: float  # x one core of the profiling host
    threads: int  # torch intra-op threads of its agent
    description: str

    @property
    def cpus(self) -> float:
        """The CPU quota that emulates it under the ``quota`` model, in CPUs of this host."""
        return self.speed * self.threads


DEVICES: dict[str, Device] = {
    "host": Device("host", 1.0, 1, "one core of this host (the profiling reference)"),
    "xavier-nx": Device("xavier-nx", 0.5, 1,
                        "Jetson Xavier NX, 6-core Carmel ARMv8.2 @1.9 GHz (the paper's main testbed), "
                        "nominal 0.5 x a host core"),
    "nano": Device("nano", 0.2, 1, "Jetson Nano, 4-core Cortex-A57 @1.43 GHz (the multi-hop topology's slow "
                   "nodes), nominal 0.2 x a host core"),
    "srn": Device("srn", 0.8, 1, "Colosseum SRN, Xeon E5-2650 (CPU-only inference), nominal 0.8 x a host core"),
}


def device(name: str) -> Device:
    try:
        return DEVICES[name]
    except KeyError:
        raise ValueError(f"unknown device {name!r}; known: {', '.join(sorted(DEVICES))}") from None


def device_speed(name: str) -> float:
    return device(name).speed


def node_speed(node: Node) -> float:
    """A node's speed: explicit ``speed`` wins over a named ``device``."""
    if node.device is not None and "speed" not in node.model_fields_set:
        return device_speed(node.device)
    return node.speed
