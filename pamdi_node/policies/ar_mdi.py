"""AR-MDI baseline: one pipeline chain per source, cut to minimise the per-item bottleneck.

Reconstructed from the AR-MDI abstract (single-source, "based on our optimal model allocation
formulation", lightweight, decentralised, resilient to delayed and failed workers; see
``reference/pa-mdi-paper.md`` §4). AR-MDI serves a stream of data items through a chain of
workers; in steady state a pipeline delivers one item per *bottleneck stage time*, so its
optimal allocation is the one that minimises that stage time. Here:

- Stages: worker i of the chain computes a contiguous block range (profiled seconds / its speed),
  and the link from worker i to i+1 serializes the activation at the cut (bytes*8 / goodput);
  every worker and every link is its own pipeline stage. The result then travels back to the
  source along the cheapest route (counted like the other stages).
- Allocation: over every simple path of live workers starting at the source (its members and
  length; ``chain_length`` caps the length, 0 = no cap) and every choice of cut points, minimise
  the largest stage time; among allocations within 1e-9 (relative) of that minimum, minimise the
  latency (the sum of stage times plus link delays). When communication is negligible the optimum
  is the classic speed-proportional share of the layers; with expensive cuts (ResNet-50 at
  20 Mbit/s ships 0.4-3.2 MB per cut) it is a short chain or the source alone.
- Exact by construction: a depth-first search over paths shares each prefix's dynamic program
  over cut points (O(blocks^2) per path prefix), once for the min-max bottleneck and once for the
  latency under that bottleneck. The plan is cached per (source, speeds, links, dead workers), so
  it is computed once per run and again only when a worker dies or a speed changes.
- Ties (symmetric topologies): paths are explored in name order rotated to start after the
  source (for a source on ``d``: e, a, b, c), workers that host another source last (they serve
  their own stream), and the first of equal plans wins; so sources with symmetric options spread
  over different workers instead of all picking the alphabetically first one.
- Decentralised: every worker derives the same plan from the same facts (the run's graph, link
  rates and speeds, re-measured speeds from beacons, and which neighbours are dead), so no plan
  travels with the task. A holder on the plan runs its range and forwards to the next member.
- Resilient: dead workers (missed beacons) are left out of the plan; a holder whose next member
  is dead or unreachable, or who is off the plan (its view of the dead differs), re-plans the
  remaining blocks from itself with the same optimisation.
- No priorities: FIFO queues (oldest task first), no handshake, one chain per source planned
  without regard to other sources (AR-MDI is a single-source scheme).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from pamdi_node.policies.graph import link_estimate, shortest_paths
from pamdi_node.policies.types import FifoBaseline, Placement, SourceView, TaskView, WorldView

_REL_TOL = 1e-9

# Directed links as (seconds per bit, delay), hashable for the plan cache.
_Links = tuple[tuple[tuple[str, str], tuple[float, float]], ...]


def _rotated(names: Sequence[str], origin: str, last: frozenset[str] = frozenset()) -> list[str]:
    """``names`` sorted, rotated to start just after ``origin`` (``origin`` itself at the end),
    with the names in ``last`` moved behind the others (stable)."""
    ordered = sorted(names)
    rotated = [n for n in ordered if n > origin] + [n for n in ordered if n <= origin]
    return [n for n in rotated if n not in last] + [n for n in rotated if n in last]


@lru_cache(maxsize=4096)
def _best_chain(
    source: SourceView,
    start: str,
    block: int,
    speeds: tuple[tuple[str, float], ...],
    links: _Links,
    max_len: int,
    other_sources: frozenset[str] = frozenset(),
) -> tuple[Placement, ...]:
    """The min-bottleneck, then min-latency chain for blocks [block, N) of ``source`` starting at
    ``start`` over the workers in ``speeds`` and the directed ``links``. Placements carry the
    plan's bottleneck as their index."""
    speed = dict(speeds)
    link = dict(links)
    n = source.num_blocks
    cum = [0.0]
    for t in source.block_time_s:
        cum.append(cum[-1] + t)
    bits = [source.bytes_into(c) * 8.0 for c in range(n)]
    adj: dict[str, list[str]] = {}
    for a, b in link:
        adj.setdefault(a, []).append(b)
    for a in adj:
        adj[a] = [b for b in _rotated(adj[a], start, other_sources) if b in speed]

    # The result's trip home (to the source's node) from every worker: cheapest route by time.
    home = source.node
    res_bits = source.result_bytes * 8.0
    routes = shortest_paths(home, {a: tuple(b for b in speed if a in adj.get(b, ())) for a in speed},
                            lambda u, v: res_bits * link[(v, u)][0] + link[(v, u)][1])
    ret_stage: dict[str, tuple[float, float]] = {}  # worker -> (largest hop serialization, total time)
    for w, path in routes.items():
        hops = list(zip(path[1:], path[:-1], strict=True))  # path runs home -> w; results travel back
        ser = [res_bits * link[h][0] for h in hops]
        ret_stage[w] = (max(ser, default=0.0), math.fsum(ser) + math.fsum(link[h][1] for h in hops))

    inf = math.inf
    s0 = 1.0 / speed[start]
    # Prefix state after the start worker: computed [block, c) on it; value per cut c.
    first_b = [inf] * (n + 1)
    first_l = [inf] * (n + 1)
    for c in range(block, n + 1):
        t = (cum[c] - cum[block]) * s0
        first_b[c] = t
        first_l[c] = t

    def extend_bottleneck(prev: list[float], a: str, b: str) -> list[float]:
        spb, _delay = link[(a, b)]
        inv = 1.0 / speed[b]
        out = [inf] * (n + 1)
        for c in range(block, n):
            pv = prev[c]
            if pv == inf:
                continue
            stage = max(pv, bits[c] * spb)
            base = cum[c]
            for c2 in range(c + 1, n + 1):
                v = (cum[c2] - base) * inv
                v = stage if stage > v else v
                if v < out[c2]:
                    out[c2] = v
        return out

    def extend_latency(prev: list[float], a: str, b: str, cap: float) -> list[float]:
        spb, delay = link[(a, b)]
        inv = 1.0 / speed[b]
        out = [inf] * (n + 1)
        for c in range(block, n):
            pv = prev[c]
            ser = bits[c] * spb
            if pv == inf or ser > cap:
                continue
            pv += ser + delay
            base = cum[c]
            for c2 in range(c + 1, n + 1):
                comp = (cum[c2] - base) * inv
                if comp > cap:
                    break
                v = pv + comp
                if v < out[c2]:
                    out[c2] = v
        return out

    # Pass 1: the smallest bottleneck over all paths.
    best_b = inf

    def dfs_b(path: tuple[str, ...], prev: list[float]) -> None:
        nonlocal best_b
        last = path[-1]
        if last in ret_stage and prev[n] < inf:
            total = max(prev[n], ret_stage[last][0])
            if total < best_b:
                best_b = total
        if max_len and len(path) >= max_len:
            return
        for nb in adj.get(last, ()):
            if nb not in path:
                dfs_b((*path, nb), extend_bottleneck(prev, last, nb))

    first_bottleneck = list(first_b)
    for c in range(block):
        first_bottleneck[c] = inf
    dfs_b((start,), first_bottleneck)
    if best_b == inf:
        return (Placement(start, block, n, (cum[n] - cum[block]) * s0),)
    cap = best_b * (1.0 + _REL_TOL)

    # Pass 2: the smallest latency with every stage within the bottleneck, over the same paths.
    best: tuple[float, tuple[str, ...], list[list[float]]] | None = None

    def dfs_l(path: tuple[str, ...], layers: list[list[float]]) -> None:
        nonlocal best
        last = path[-1]
        prev = layers[-1]
        if last in ret_stage and prev[n] < inf and ret_stage[last][0] <= cap:
            total = prev[n] + ret_stage[last][1]
            if best is None or total < best[0] * (1.0 - _REL_TOL):
                best = (total, path, [list(x) for x in layers])
        if max_len and len(path) >= max_len:
            return
        for nb in adj.get(last, ()):
            if nb not in path:
                dfs_l((*path, nb), [*layers, extend_latency(prev, last, nb, cap)])

    first_latency = [v if v <= cap else inf for v in first_l]
    for c in range(block):
        first_latency[c] = inf
    dfs_l((start,), [first_latency])
    assert best is not None  # pass 1 found a feasible path
    _, path, layers = best
    # Walk back through the layers to recover the cuts.
    cuts = [n]
    for i in range(len(path) - 1, 0, -1):
        a, b = path[i - 1], path[i]
        spb, delay = link[(a, b)]
        inv = 1.0 / speed[b]
        c2 = cuts[-1]
        target = layers[i][c2]
        chosen = None
        for c in range(block, c2):
            pv = layers[i - 1][c]
            if pv == inf or bits[c] * spb > cap:
                continue
            comp = (cum[c2] - cum[c]) * inv
            if comp <= cap and math.isclose(pv + bits[c] * spb + delay + comp, target, rel_tol=1e-12, abs_tol=0.0):
                chosen = c
                break
        assert chosen is not None
        cuts.append(chosen)
    cuts.append(block)
    cuts.reverse()  # cuts[i]..cuts[i+1] is worker i's range
    out = []
    for i, w in enumerate(path):
        if cuts[i + 1] > cuts[i] or i == 0:
            out.append(Placement(w, cuts[i], cuts[i + 1], best_b))
    return tuple(out)


class ARMDIPolicy(FifoBaseline):
    name = "ar-mdi"

    def __init__(self, *, chain_length: int = 0) -> None:
        if chain_length < 0:
            raise ValueError(f"chain_length must be >= 0, got {chain_length}")
        self.chain_length = int(chain_length)

    # ------------------------------------------------------------------ planning
    def _facts(self, world: WorldView) -> tuple[tuple[tuple[str, float], ...], _Links]:
        """(speeds, links) of the live graph as this worker knows it; dead neighbours left out."""
        speeds = dict(world.speeds)
        for name, peer in world.peers.items():
            speeds[name] = peer.speed  # freshest measurement wins
        dead = {n for n, p in world.peers.items() if not p.alive and n != world.here}
        live = {n: s for n, s in speeds.items() if n not in dead and s > 0}
        if world.links:  # the run's graph: only real links (and the holder's fresh view of its own)
            pairs = [(a, b) for a, b in world.links if a in live and b in live]
            pairs += [(world.here, b) for b in world.peers if b in live and b != world.here]
        else:
            pairs = [(a, b) for a in live for b in live if a != b]
        links: dict[tuple[str, str], tuple[float, float]] = {}
        for a, b in pairs:
            lk = link_estimate(world, a, b)
            if lk is not None and 0 < lk[0] < math.inf:
                links[(a, b)] = (1.0 / lk[0], lk[1])  # (seconds per bit, delay)
        return tuple(sorted(live.items())), tuple(sorted(links.items()))

    def plan(self, source: SourceView, world: WorldView, start: str | None = None,
             block: int = 0) -> tuple[Placement, ...]:
        """The chain for blocks [block, N) starting at ``start`` (default: the source's own plan)."""
        speeds, links = self._facts(world)
        origin = source.node if start is None else start
        if origin not in dict(speeds):
            speeds = (*speeds, (origin, world.speeds.get(origin, 1.0)))
        others = frozenset(s.node for s in world.sources.values() if s.node != source.node)
        return _best_chain(source, origin, block, tuple(sorted(speeds)), links, self.chain_length, others)

    # ------------------------------------------------------------------ Policy protocol
    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]:
        source = world.sources[task.source]
        b = task.next_block
        n = source.num_blocks
        if b >= n:
            return ()
        here = world.here
        steps = self.plan(source, world)
        for i, step in enumerate(steps):
            if step.node == here and step.start <= b < step.end:
                return (Placement(here, b, step.end, step.index),)
            if step.start == b and step.end > b and step.node != here:
                peer = world.peers.get(step.node)
                holder_ok = i > 0 and steps[i - 1].node == here
                if holder_ok and peer is not None and peer.alive:
                    return (Placement(step.node, b, step.end, step.index),)
        # Off the plan (a member died, or views differ): re-plan the rest from here.
        mine = self.plan(source, world, start=here, block=b)
        first = mine[0]
        if first.end > b:
            return (Placement(here, b, first.end, first.index),)
        nxt = mine[1] if len(mine) > 1 else None
        if nxt is not None and nxt.node in world.peers and world.peers[nxt.node].alive:
            return (Placement(nxt.node, b, nxt.end, nxt.index),)
        return (Placement(here, b, n, first.index),)


__all__ = ["ARMDIPolicy"]
