"""Look-ahead for the per-boundary index: the best completion of the rest of the model.

The greedy index of PA-MDI / MS-MDI scores a candidate worker k for the next partition. Scoring it
with "run the whole rest of the model on k" (``horizon="rest"``) misses plans that move again
later, at a cheaper cut or to a faster worker: "compute here up to the block whose activation is
small, then ship it to the fast node" scores as either "ship the big activation now" or "finish
here", both worse. That single blind spot is where the greedy lost most against the exact fluid
optimum (up to 11% on small random instances).

``completion_costs`` instead evaluates, for every candidate k, the cheapest way to finish the task
if its next partition runs on k, by a backward dynamic program over states (partition boundary,
worker) restricted to what the holder knows: itself and its live neighbours, their speeds, their
beaconed queues, and the link rates between them (``base.link_estimate``). Costs:

- compute partition p on n: profiled seconds / speed_n;
- move the activation at boundary c from n to k: bytes*8/goodput + delay, plus the queued seconds
  ahead of the task at k (paid on entering k; the caller chooses priority-aware or not);
- finish: the result's trip back to the source (direct link, else the best two-hop relay in view,
  else 0 when the source is out of view).

The first move (from the holder now) also waits for the holder's own backlog on that link; later
moves use the nominal link cost. The continuation is a plan, not a commitment: the task decides
again at every boundary with fresh beacons (receding horizon), so this stays per-hop and
decentralised. Cost: O(P * K^2) for P partitions left and K workers in view, in plain Python.

Caching (the decision runs at every partition boundary, so it must be cheap; ``bench_agent.py``
part 3 measures it). Two levels, both pure functions of their keys, so a cached answer is the one
the straightforward computation gives (``tests/test_policies.py`` checks this on random views):

- ``_Static``: what depends on the source, the workers in view and the links only (per-partition
  compute seconds, the cost of every move at every boundary, the result's trip home). Rebuilt only
  when the set of live workers or the links change.
- ``_Table``: the backward values for one set of speeds and queues. A beacon with a new queue makes
  a new table, but only the partitions from the decision's boundary to the end are computed (a
  task near its end pays for little); later decisions on the same view extend it backwards.

Caches are per ``LookaheadCache`` (each PA-MDI / MS-MDI policy object holds its own); the sources
and the ``links`` / ``neighbours`` mappings of a view are keyed by identity (they are immutable in
practice: the agent's and the simulator's never change during a run), and each cache entry holds a
reference to them so that their ids cannot be recycled.
"""

from __future__ import annotations

import bisect
import itertools
from collections import OrderedDict
from collections.abc import Callable

from pamdi_node.policies.graph import link_estimate, transfer_s
from pamdi_node.policies.types import PeerView, SourceView, WorldView


def _link_matrix(world: WorldView, names: list[str]) -> list[list[tuple[float, float] | None]]:
    """(seconds per bit, delay) for every ordered pair of workers in view, None where no link.
    Moves *into* the holder (``names[0]``) are left out: a task never returns to a worker it left
    (shipping an activation back is never better than not sending it), which also keeps the
    continuation independent of the holder's own, ever-changing queue."""
    out: list[list[tuple[float, float] | None]] = []
    for a in names:
        row: list[tuple[float, float] | None] = [None]
        for b in names[1:]:
            lk = link_estimate(world, a, b) if a != b else None
            row.append((1.0 / lk[0], lk[1]) if lk is not None and lk[0] > 0 else None)
        out.append(row)
    return out


class _Static:
    """Queue- and speed-independent parts of the backward program for one source and view.

    ``times[p]``: profiled seconds of partition p; ``moves[p][i]``: ``(j, seconds)`` for every
    worker j the activation at boundary p can move to from worker i (transfer + delay, in the
    order of ``j``); ``ret[i]``: the result's trip home from worker i.
    """

    __slots__ = ("hold", "moves", "ret", "tables", "times")

    def __init__(self, source: SourceView, world: WorldView, names: list[str]) -> None:
        k = len(names)
        # Holding these keeps their ids (part of the cache key) from being reused by others.
        self.hold = (source, world.links, world.neighbours)
        links = _link_matrix(world, names)
        bounds = source.bounds
        self.times = [source.range_time_s(a, b) for a, b in itertools.pairwise(bounds)]
        home = source.node
        res_bits = source.result_bytes * 8.0
        ret: list[float] = []
        for i, a in enumerate(names):
            if a == home:
                ret.append(0.0)
                continue
            lk = link_estimate(world, a, home)
            if lk is not None and lk[0] > 0:
                ret.append(res_bits / lk[0] + lk[1])
                continue
            best = 0.0  # the source is out of view and no relay in view reaches it: unknown, 0
            for j in range(1, k):
                hop = links[i][j]
                nxt = link_estimate(world, names[j], home)
                if hop is not None and nxt is not None and nxt[0] > 0:
                    cost = res_bits * hop[0] + hop[1] + res_bits / nxt[0] + nxt[1]
                    best = cost if best == 0.0 else min(best, cost)
            ret.append(best)
        self.ret = ret
        self.moves: list[list[tuple[tuple[int, float], ...]]] = []
        for p in range(len(self.times)):
            b = source.bytes_into(bounds[p]) * 8.0
            self.moves.append([tuple((j, b * lk[0] + lk[1]) for j, lk in enumerate(links[i]) if lk is not None)
                               for i in range(k)])
        self.tables: OrderedDict[tuple[float, ...], _Table] = OrderedDict()


class _Table:
    """Backward values over the source's partition boundaries for one view of the neighbourhood.

    ``run[p][i]``: seconds to run partition p on worker i and then finish as well as possible;
    ``value[p][i]``: best from boundary p with the task on worker i (its queue there paid), i.e.
    min(run[p][i], move to j at boundary p + j's queue + run[p][j]); ``value[P]`` is the result's
    trip home. Filled lazily from the end: ``value[p]`` for ``p >= low`` only.
    """

    __slots__ = ("inv_speed", "low", "queue", "run", "static", "value")

    def __init__(self, static: _Static, inv_speed: list[float], queue: list[float]) -> None:
        n_parts = len(static.times)
        self.static = static
        self.inv_speed = inv_speed
        self.queue = queue
        self.value: list[list[float] | None] = [None] * (n_parts + 1)
        self.value[n_parts] = static.ret
        self.run: list[list[float] | None] = [None] * n_parts
        self.low = n_parts

    def values(self, p: int) -> list[float]:
        """``value[p]``, computing the boundaries between ``p`` and what is known."""
        if p >= self.low:
            v = self.value[p]
            assert v is not None
            return v
        value = self.value[self.low]
        assert value is not None
        times, moves, inv, queue = self.static.times, self.static.moves, self.inv_speed, self.queue
        k = len(inv)
        for pp in range(self.low - 1, p - 1, -1):
            run = self.run[pp]
            if run is None:
                t = times[pp]
                run = [t * inv[i] + value[i] for i in range(k)]
                self.run[pp] = run
            enter = [queue[i] + run[i] for i in range(k)]
            value = []
            for i, mv in enumerate(moves[pp]):
                best = run[i]
                for j, m in mv:
                    c = m + enter[j]
                    if c < best:
                        best = c
                value.append(best)
            self.value[pp] = value
        self.low = p
        return value

    def runs(self, p: int) -> list[float]:
        """``run[p]``: partition p on each worker, then the best completion."""
        run = self.run[p]
        if run is None:
            nxt = self.values(p + 1)
            t = self.static.times[p]
            inv = self.inv_speed
            run = [t * inv[i] + nxt[i] for i in range(len(inv))]
            self.run[p] = run
        return run


class LookaheadCache:
    """The tables of one policy object (see the module doc). ``max_views`` bounds the static
    entries, ``max_tables`` the tables kept per static entry (least recently used go first)."""

    def __init__(self, max_views: int = 256, max_tables: int = 64) -> None:
        self.max_views = max_views
        self.max_tables = max_tables
        self.views: OrderedDict[tuple[object, ...], _Static] = OrderedDict()

    def clear(self) -> None:
        self.views.clear()

    def table(self, source: SourceView, world: WorldView, names: list[str], peers: list[PeerView],
              queue: list[float], link_key: tuple[float, ...] | None = None) -> _Table:
        """``link_key``: the neighbours' (rate, delay) pairs flattened, when the caller has them."""
        home = world.peers.get(source.node)
        if link_key is None:
            link_key = tuple([x for p in peers[1:] for x in (p.rate_bps, p.delay_s)])
        skey = (id(source), id(world.links), len(world.links), id(world.neighbours), *names, link_key,
                (home.rate_bps, home.delay_s) if home is not None else None)
        static = self.views.get(skey)
        if static is None:
            static = _Static(source, world, names)
            self.views[skey] = static
            if len(self.views) > self.max_views:
                self.views.popitem(last=False)
        else:
            self.views.move_to_end(skey)
        speeds = [p.speed for p in peers]
        dkey = (*speeds, *queue)
        tables = static.tables
        table = tables.get(dkey)
        if table is None:
            table = _Table(static, [1.0 / s for s in speeds], queue)
            tables[dkey] = table
            if len(tables) > self.max_tables:
                tables.popitem(last=False)
        else:
            tables.move_to_end(dkey)
        return table


_DEFAULT = LookaheadCache()


def clear_caches() -> None:
    """Forget the tables of the shared cache (``completion_costs`` calls without ``cache``)."""
    _DEFAULT.clear()


def completion_parts(source: SourceView, block: int, world: WorldView, queue_of: Callable[[PeerView], float],
                     cache: LookaheadCache | None) -> tuple[list[str], list[PeerView], list[float], list[float]]:
    """(names, peers, queues ahead, best completions ``rest``) of the holder (first; its queue
    entry is 0: see ``completion_costs`` for what it pays) and its live neighbours, in name order:
    the pieces ``completion_costs`` sums, for a ranking that sums them itself."""
    here = world.here
    in_view = world.peers
    me = in_view[here]
    others = sorted([n for n, p in in_view.items() if n != here and p.alive and p.speed > 0])
    names = [here, *others]
    peers = [me]
    queue = [0.0]  # the holder is never re-entered
    links: list[float] = []
    for n in others:
        peer = in_view[n]
        peers.append(peer)
        queue.append(queue_of(peer))
        links.append(peer.rate_bps)
        links.append(peer.delay_s)
    table = (cache if cache is not None else _DEFAULT).table(source, world, names, peers, queue, tuple(links))
    bounds = source.bounds
    p = bisect.bisect_right(bounds, block) - 1
    if bounds[p] == block:
        rest = table.runs(p)
    else:  # mid-partition (a placement that ended off a boundary): finish this partition first
        t = source.range_time_s(block, bounds[p + 1])
        nxt = table.values(p + 1)
        rest = [t / peers[i].speed + nxt[i] for i in range(len(names))]
    return names, peers, queue, rest


def completion_costs(
    source: SourceView,
    block: int,
    world: WorldView,
    queue_of: Callable[[PeerView], float],
    cache: LookaheadCache | None = None,
) -> dict[str, tuple[float, float]]:
    """For every live candidate k (the holder and its live neighbours): ``(entry, rest)`` seconds.

    ``entry`` is what it takes to get the task into k's service: the holder's own queue ahead
    (``queue_of``) when k is the holder, else the transfer of the activation at ``block`` (with
    the link's backlog) plus k's queue ahead. ``rest`` is the best completion from there: the
    next partition on k, then the cheapest plan for the remaining partitions over the workers in
    view, and the result's trip back to the source.

    The backward table depends on the neighbours' beaconed queues, speeds and links, not on the
    holder's own queue or the block, so it is computed once per such view and reused from
    ``cache`` (default: one shared by every caller that passes none). ``world.links`` and
    ``world.neighbours`` must not be mutated after they are handed over (they are keyed by id).
    """
    names, peers, queue, rest = completion_parts(source, block, world, queue_of, cache)
    nbytes = source.bytes_into(block)
    out: dict[str, tuple[float, float]] = {names[0]: (queue_of(peers[0]), rest[0])}
    for name, peer, q, r in zip(names[1:], peers[1:], queue[1:], rest[1:], strict=True):
        out[name] = (transfer_s(nbytes, peer) + q, r)
    return out
