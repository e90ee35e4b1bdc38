"""Named device profiles: compute speed relative to the host the shipped profiles were measured on.

A spec node may say ``device: xavier-nx`` instead of a ``speed``; an explicit ``speed`` wins.
These are documented estimates, not measurements (no such device is reachable here): relative
single-stream CPU inference throughput against one core of the profiling host, from published
per-core performance of the parts. Replace them with calibrated numbers (profile the same model on
the device, divide the times) when you have the hardware.

- ``xavier-nx``: Jetson Xavier NX, 6-core Carmel ARMv8.2 @1.9 GHz (the paper's main testbed) - 0.5
- ``nano``: Jetson Nano, 4-core Cortex-A57 @1.43 GHz (the multi-hop topology's slow nodes) - 0.2
- ``srn``: Colosseum SRN, Xeon E5-2650 (CPU-only inference) - 0.8
- ``host``: the profiling host itself - 1.0
"""

from __future__ import annotations

DEVICE_SPEEDS: dict[str, float] = {
    "host": 1.0,
    "xavier-nx": 0.5,
    "nano": 0.2,
    "srn": 0.8,
}


def device_speed(device: str) -> float:
    try:
        return DEVICE_SPEEDS[device]
    except KeyError:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(sorted(DEVICE_SPEEDS))}") from None
