"""Arrival times of a source's data items: one function for the agents' source threads and the simulator.

Periodic sources submit every ``interval_s``; Poisson sources draw exponential gaps with that mean
from a generator seeded by the run seed and the source's name (``agent.config.input_seed(seed,
source, -1)``), so the emulation and the simulator see the very same schedule for the same seed.
"""

from __future__ import annotations

import random

from pamdi_node.agent.config import input_seed


def arrival_offsets(source: str, run_seed: int, samples: int, interval_s: float, arrival: str = "periodic",
                    start_s: float = 0.0) -> list[float]:
    """Seconds after the run's start at which each of the ``samples`` items arrives."""
    rng = random.Random(input_seed(run_seed, source, -1))
    out = []
    t = start_s
    for _ in range(samples):
        out.append(t)
        gap = interval_s
        if arrival == "poisson" and interval_s > 0:
            gap = rng.expovariate(1.0 / interval_s)
        t += gap
    return out
