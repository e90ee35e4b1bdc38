"""The device-time model: how long a block range takes on an emulated device, in one place.

The simulator and every backend share one idea of a node's compute time, chosen per run (the spec's
``device_time``, ``--device-time``) and recorded in the manifest:

- ``profile`` (default for local, netns, docker, compose): the agent runs the real blocks at host
  speed, then releases the result when the block range's *modelled* time has passed since compute
  started. The modelled time is exactly the simulator's number: profiled block time / node speed.
  Host contention then only eats slack; a range whose real compute took longer than its modelled
  time is an *overrun*, recorded in its span and counted in the run's summary.
- ``quota``: the node is slowed by a CPU quota of its own (cgroup / ``docker --cpus``) and releases
  results as soon as they are computed. Honest only with one torch thread, passive OpenMP waits
  and a short CFS period (see ``orchestrator/netem/cgroups.py``); its predictions need a profile
  calibrated under the quota (``pamdi calibrate``).
- ``native``: real devices (Colosseum, a lab): real speed, no holding; predictions need a profile
  measured on the device.

Why not a quota by default: a CFS quota is not a linear slowdown (one ResNet-50 pass at 0.3 CPU
took 406 ms instead of 303; millisecond blocks wait out whole periods), so the emulation and the
simulator disagreed by 1.5x-16x. Holding to the modelled time is what calibrated-delay emulators
(FedScale-style virtual clocks, "process dilators") do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, NamedTuple

DeviceTime = Literal["profile", "quota", "native"]
DEVICE_TIMES: tuple[str, ...] = ("profile", "quota", "native")

# A run is faithful when at most this fraction of its block ranges overran their modelled time by
# more than OVERRUN_TOLERANCE (sleep and wake-up jitter of a few hundred microseconds is not an
# overrun). Above it the host could not keep up and the measured times mean less than they say.
FAITHFUL_MAX_OVERRUN_FRACTION = 0.05
OVERRUN_TOLERANCE_S = 0.001


class Timing(NamedTuple):
    """One block range as the executor ran it (local clock)."""

    started: float
    released: float  # when the result was handed on (= computed for quota/native)
    host_s: float  # real compute time on this host
    overrun_s: float  # how much the real compute exceeded the modelled time (profile only; >= 0)


def check(name: str) -> str:
    if name not in DEVICE_TIMES:
        raise ValueError(f"device_time: {name!r} is not one of {', '.join(DEVICE_TIMES)}")
    return name


def hold(model: str, started: float, computed: float, modelled_s: float,
         clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> Timing:
    """Wait (``profile`` only) until ``started + modelled_s``; return the range's timing."""
    host_s = computed - started
    if model != "profile":
        return Timing(started, computed, host_s, 0.0)
    release = started + modelled_s
    while (left := release - clock()) > 0:  # Linux wakes sleepers ~0.1 ms late at most
        sleep(left)
    return Timing(started, max(clock(), release), host_s, max(0.0, host_s - modelled_s))


def is_overrun(overrun_s: float) -> bool:
    return overrun_s > OVERRUN_TOLERANCE_S
