"""Link delay applied by the receiving agent, where the host has no netem to add it in the kernel.

A peer message on such a link is held until ``arrival + delay`` and then handled as if it had just
arrived; messages of a superseded run are dropped with it."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from typing import Any


class DelayLine:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any, Any]] = []
        self._seq = itertools.count()

    def hold(self, due: float, run: Any, msg: Any) -> None:
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
        self._heap.clear()
