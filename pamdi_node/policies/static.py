"""pa-mdi-static: follow a precomputed static allocation (from the fluid optimum).

The plan (``plan=`` parameter, JSON-able) maps each source name to a list of routes with their
traffic fractions::

    {"ts": [[0.7, [["a", 0, 18]]],
            [0.3, [["a", 0, 4], ["b", 4, 18]]]], ...}

A route is a sequence of steps ``[node, start, end]``: run blocks [start, end) on ``node``; a step
with ``start == end`` only relays the activation (multi-hop move). Consecutive steps are on the
same node or on neighbours. Each task picks one route deterministically from its id: for ids
ending in a sequence number (``src-17``) the low-discrepancy point frac(seq·φ) is mapped onto the
cumulative fractions (so any prefix of tasks matches the fractions closely), otherwise CRC-32 of
the id. Queues serve by priority weight (higher γα first, then age); no handshake. A dead next
worker makes the holder finish the model itself. Sources without a plan run locally.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence

from pamdi_node.policies.types import FifoBaseline, Placement, TaskView, WorldView, weight_of

_SEQ = re.compile(r"(\d+)$")
_PHI = (math.sqrt(5.0) - 1.0) / 2.0

Route = tuple[tuple[str, int, int], ...]


def _point(task_id: str) -> float:
    m = _SEQ.search(task_id)
    if m:
        return (int(m.group(1)) * _PHI) % 1.0
    return zlib.crc32(task_id.encode()) / 2**32


class StaticPolicy(FifoBaseline):
    name = "pa-mdi-static"
    priority_queue = True  # by weight, then birth (queue_key below); grants as the baselines

    def __init__(self, *, plan: Mapping[str, Sequence[Sequence[object]]] | None = None, rho_max: float = 0.8) -> None:
        # rho_max: utilization cap the orchestrator uses when it computes the plan (not used here).
        if not 0 < rho_max <= 1:
            raise ValueError(f"rho_max must be in (0, 1], got {rho_max}")
        self.rho_max = float(rho_max)
        self.plan: dict[str, tuple[tuple[float, Route], ...]] = {}
        for source, routes in (plan or {}).items():
            parsed: list[tuple[float, Route]] = []
            for i, entry in enumerate(routes):
                try:
                    frac, steps = entry
                    route = tuple((str(n), int(a), int(b)) for n, a, b in steps)  # type: ignore[misc]
                    frac = float(frac)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise ValueError(f"plan[{source!r}][{i}]: expected [fraction, [[node, start, end], ...]]") from None
                if frac < 0 or not route:
                    raise ValueError(f"plan[{source!r}][{i}]: negative fraction or empty route")
                parsed.append((frac, route))
            total = math.fsum(f for f, _ in parsed)
            if total <= 0:
                raise ValueError(f"plan[{source!r}]: fractions sum to zero")
            self.plan[source] = tuple((f / total, r) for f, r in parsed)

    def route_of(self, task: TaskView) -> Route | None:
        routes = self.plan.get(task.source)
        if not routes:
            return None
        u = _point(task.task_id)
        acc = 0.0
        for frac, route in routes:
            acc += frac
            if u < acc:
                return route
        return routes[-1][1]

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]:
        return (-weight_of(world.sources[task.source]), task.born_s)

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]:
        source = world.sources[task.source]
        n = source.num_blocks
        b = task.next_block
        if b >= n:
            return ()
        route = self.route_of(task)
        fallback = (Placement(world.here, b, n, 0.0),)
        if route is None:
            return fallback
        for i, (node, start, end) in enumerate(route):
            if node != world.here or not start <= b <= end:
                continue
            if b < end:
                return (Placement(node, b, end, 0.0),)
            # b == end: this step is done here; hand over to the next step
            for nxt_node, nxt_start, nxt_end in route[i + 1 :]:
                if nxt_start != b:
                    break
                if nxt_node == world.here:
                    if nxt_end > b:
                        return (Placement(nxt_node, b, nxt_end, 0.0),)
                    continue
                peer = world.peers.get(nxt_node)
                if peer is None or not peer.alive:
                    return fallback
                return (Placement(nxt_node, b, nxt_end, 0.0),)
        return fallback
