"""Link jitter: the one delay-variation model that the agents' delay line and the simulator share,
and that netem applies where the kernel has it.

A message on a link with one-way delay D and jitter J waits ``D + U(-J, J)``: uniform on
[D - J, D + J], which is what netem's ``delay D J`` draws without a distribution table (the
kernel's ``tabledist`` with no table), so the spec's numbers mean the same with and without netem.
Mean D, standard deviation J / sqrt(3). J may not exceed D (no negative delays; the spec refuses it).

No reordering: a message is never released before the one sent ahead of it on the same link
direction (FIFO), because TCP and ZeroMQ deliver in order anyway; a message that drew a short delay
behind one that drew a long one waits for it. The mean latency on a busy jittered link is therefore
somewhat above D (the simulator models exactly this, with the same draws' distribution).

Draws are seeded per link direction (the run's seed and the two node names, ``link_seed``), so a
run repeats its jitter and every policy of a spec meets the same sequence on a link.
"""

from __future__ import annotations

import random


def jitter_problem(delay_ms: float, jitter_ms: float, scenario: str | None = None) -> str | None:
    """Why a link cannot have this jitter (one line), or None."""
    if jitter_ms == 0:
        return None
    if scenario is not None:
        return (f"jitter_ms {jitter_ms:g} on scenario link {scenario!r}: the scenario sets the delay over time; "
                "drop jitter_ms or the scenario")
    if jitter_ms > delay_ms:
        return (f"jitter_ms {jitter_ms:g} exceeds delay_ms {delay_ms:g} (a message waits delay_ms ± jitter_ms, "
                "which cannot be negative); raise delay_ms or lower jitter_ms")
    return None


def link_seed(seed: int, src: str, dst: str) -> str:
    """The seed of one link direction's draws (``random.Random`` hashes a str seed stably)."""
    return f"pamdi-jitter:{seed}:{src}->{dst}"


class JitteredRelease:
    """When each message that has crossed one link direction is released: ``D + U(-J, J)`` after
    it arrived, and never before the message ahead of it (FIFO). ``due`` must be called in the
    order the messages arrived."""

    __slots__ = ("_last", "_rng", "delay_s", "jitter_s")

    def __init__(self, delay_s: float, jitter_s: float, seed: str) -> None:
        if not 0 <= jitter_s <= delay_s:
            raise ValueError(f"jitter {jitter_s:g} s must lie in [0, delay {delay_s:g} s]")
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self._rng = random.Random(seed)
        self._last = float("-inf")

    def due(self, arrived: float) -> float:
        j = self.jitter_s
        due = arrived + self.delay_s + (self._rng.uniform(-j, j) if j > 0 else 0.0)
        if due < self._last:
            due = self._last  # in order: wait for the message ahead
        self._last = due
        return due
