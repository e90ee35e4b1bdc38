"""Pure graph helpers over the views: transfer times, link estimates, chains and shortest paths."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence

from pamdi_node.policies.types import PeerView, Placement, SourceView, WorldView


def transfer_s(nbytes: int, peer: PeerView) -> float:
    """Time to move ``nbytes`` to ``peer``: wait for the link's backlog, serialize at its goodput,
    propagate."""
    if math.isinf(peer.rate_bps):
        return 0.0
    return peer.link_backlog_s + nbytes * 8.0 / peer.rate_bps + peer.delay_s


def link_estimate(world: WorldView, a: str, b: str) -> tuple[float, float] | None:
    """(goodput bps, delay s) of the directed link a -> b as ``world`` knows it, or None if there is none.

    The holder's own links come from its peer views (fresh); other links from ``world.links``.
    When ``world.links`` is empty (a caller that does not know the graph's rates), a link is
    assumed wherever ``world.neighbours`` says so (everywhere when that is empty too: full mesh)
    and given the rate and delay of the holder's own link to ``b`` (else to ``a``): exact on a
    uniform mesh, an estimate elsewhere.
    """
    if a == b:
        return None
    here = world.here
    if a == here:
        peer = world.peers.get(b)
        return (peer.rate_bps, peer.delay_s) if peer is not None else world.links.get((a, b))
    if world.links:
        return world.links.get((a, b))
    if world.neighbours and b not in world.neighbours.get(a, ()):
        return None
    for name in (b, a):
        peer = world.peers.get(name)
        if peer is not None and name != here:
            return (peer.rate_bps, peer.delay_s)
    return None


def plan_chain(
    start: str,
    speeds: Mapping[str, float],
    neighbours: Mapping[str, Sequence[str]],
    *,
    length: int = 0,
    exclude: frozenset[str] = frozenset(),
) -> tuple[str, ...]:
    """A simple path of workers starting at ``start`` for a single-chain (AR-MDI) pipeline.

    Greedy walk: from the last node, step to the fastest unvisited neighbour (ties by name); when
    the graph has no adjacency information every node is a neighbour (full mesh). ``length`` caps
    the chain (0 = as long as the walk goes); ``exclude`` removes known-dead workers.
    """
    nodes = sorted(set(speeds) | {start})
    chain = [start]
    seen = {start}
    while length <= 0 or len(chain) < length:
        last = chain[-1]
        nbrs = neighbours.get(last) if neighbours else None
        pool = nodes if nbrs is None else nbrs
        options = [n for n in pool if n not in seen and n not in exclude]
        if not options:
            break
        nxt = min(options, key=lambda n: (-speeds.get(n, 1.0), n))
        chain.append(nxt)
        seen.add(nxt)
    return tuple(chain)


def chain_shares(source: SourceView, chain: Sequence[str], speeds: Mapping[str, float]) -> tuple[Placement, ...]:
    """Split all blocks of ``source`` over ``chain`` with profiled-time shares proportional to speed.

    Worker i gets the contiguous range whose cumulative profiled time is nearest
    ``total * sum(speed[:i+1]) / sum(speed)``; workers whose share rounds to zero blocks are
    skipped. Returns one ``Placement`` per worker that got blocks (index = its compute seconds).
    """
    spd = [max(speeds.get(n, 1.0), 1e-9) for n in chain]
    total_speed = math.fsum(spd)
    shares = [s / total_speed for s in spd]
    n = source.num_blocks
    cum = [0.0]
    for t in source.block_time_s:
        cum.append(cum[-1] + t)
    total = cum[-1] if cum[-1] > 0 else float(n)
    if cum[-1] <= 0:
        cum = [float(i) for i in range(n + 1)]
    out: list[Placement] = []
    start = 0
    acc = 0.0
    for i, node in enumerate(chain):
        if start >= n:
            break
        acc += shares[i]
        if i == len(chain) - 1:
            end = n
        else:
            target = total * acc
            end = min(range(start, n + 1), key=lambda j: (abs(cum[j] - target), j))
        if end > start:
            out.append(Placement(node, start, end, (cum[end] - cum[start]) / spd[i]))
            start = end
    return tuple(out)


def shortest_paths(
    start: str, neighbours: Mapping[str, Sequence[str]], cost: Callable[[str, str], float]
) -> dict[str, tuple[str, ...]]:
    """Dijkstra from ``start``: the cheapest path (as a node tuple) to every reachable node.

    Ties between equal-cost paths are broken by the lexicographic order of the paths, so the
    result is deterministic.
    """
    best: dict[str, tuple[float, tuple[str, ...]]] = {start: (0.0, (start,))}
    heap: list[tuple[float, tuple[str, ...]]] = [(0.0, (start,))]
    done: set[str] = set()
    while heap:
        d, path = heapq.heappop(heap)
        node = path[-1]
        if node in done:
            continue
        done.add(node)
        for nb in neighbours.get(node, ()):
            if nb in done:
                continue
            nd = d + cost(node, nb)
            cand = (nd, (*path, nb))
            if nb not in best or cand < best[nb]:
                best[nb] = cand
                heapq.heappush(heap, cand)
    return {n: p for n, (_, p) in best.items()}
