"""Link delay (and jitter) applied by the receiving agent, where the host has no netem to add it in
the kernel.

A peer message on such a link is held until ``arrival + delay`` (plus a jitter draw, never before
the message ahead of it from that peer: ``pamdi_node.jitter``) and then handled as if it had just
arrived; messages of a superseded run are dropped with it."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

from pamdi_node.jitter import JitteredRelease, link_seed


class DelayLine:
    __slots__ = ("_heap", "_links", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any, Any]] = []
        self._seq = itertools.count()
        self._links: dict[str, JitteredRelease] = {}

    def configure(self, peers: Mapping[str, Any], *, seed: int, here: str) -> None:
        """Hold the messages of every peer whose config says ``apply_delay`` (``PeerConfig``)."""
        for name, peer in peers.items():
            if peer.apply_delay and peer.delay_s > 0:
                self.set_link(name, peer.delay_s, peer.jitter_s, seed=seed, here=here)

    def set_link(self, peer: str, delay_s: float, jitter_s: float, *, seed: int, here: str) -> None:
        """Hold messages from ``peer`` for ``delay_s ± jitter_s``, in order; draws seeded by the
        run's ``seed`` and the link direction peer -> ``here``."""
        self._links[peer] = JitteredRelease(delay_s, jitter_s, link_seed(seed, peer, here))

    def holds(self, peer: str) -> bool:
        return peer in self._links

    def hold_from(self, peer: str, arrived: float, run: Any, msg: Any) -> float:
        """Hold a message that arrived from ``peer`` (``set_link``) at ``arrived``; returns its due time."""
        due = self._links[peer].due(arrived)
        self.hold(due, run, msg)
        return due

    def hold(self, due: float, run: Any, msg: Any) -> None:
        # Equal due times (a message held back behind the one ahead) leave in arrival order (seq).
        heapq.heappush(self._heap, (due, next(self._seq), run, msg))

    def next_due(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def release(self, now: float, current_run: Any) -> Iterator[tuple[Any, Any, float]]:
        """``(run, msg, due)`` of every held message due by ``now`` that belongs to ``current_run``."""
        while self._heap and self._heap[0][0] <= now:
            due, _, run, msg = heapq.heappop(self._heap)
            if run is current_run:
                yield run, msg, due

    def clear(self) -> None:
        """Drop what is held and the links' settings (a new configuration sets its own)."""
        self._heap.clear()
        self._links.clear()
