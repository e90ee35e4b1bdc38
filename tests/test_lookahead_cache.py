"""The look-ahead's caches change no decision.

``_reference_completion_costs`` is the straightforward computation (the backward program rebuilt
from scratch at every call, as the look-ahead was first written). Over many random views, replayed
in sequences that revisit states (so cached tables are reused, extended backwards and evicted), a
PA-MDI / MS-MDI policy on the cached path ranks exactly as one on the reference path: same
placements in the same order, bit-identical indices, and the same grants.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest

from pamdi_node.policies import get_policy, pa_mdi
from pamdi_node.policies.graph import link_estimate, transfer_s
from pamdi_node.policies.lookahead import LookaheadCache
from pamdi_node.policies.partition import split_blocks
from pamdi_node.policies.types import OffloadRequest, PeerView, SourceView, TaskView, WorldView


def _reference_completion_costs(
    source: SourceView, block: int, world: WorldView, queue_of: Callable[[PeerView], float],
    cache: object = None,
) -> dict[str, tuple[float, float]]:
    here = world.here
    me = world.peers[here]
    others = sorted(n for n, p in world.peers.items() if n != here and p.alive and p.speed > 0)
    names = [here, *others]
    peers = [me, *(world.peers[n] for n in others)]
    queue = [0.0, *(queue_of(p) for p in peers[1:])]
    inv_speed = [1.0 / p.speed for p in peers]
    k = len(names)
    links: list[list[tuple[float, float] | None]] = []
    for a in names:
        row: list[tuple[float, float] | None] = [None]
        for b in names[1:]:
            lk = link_estimate(world, a, b) if a != b else None
            row.append((1.0 / lk[0], lk[1]) if lk is not None and lk[0] > 0 else None)
        links.append(row)
    bounds = source.bounds
    times = [source.range_time_s(a, b) for a, b in itertools.pairwise(bounds)]
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
        best = 0.0
        for j in range(1, k):
            hop = links[i][j]
            nxt = link_estimate(world, names[j], home)
            if hop is not None and nxt is not None and nxt[0] > 0:
                cost = res_bits * hop[0] + hop[1] + res_bits / nxt[0] + nxt[1]
                best = cost if best == 0.0 else min(best, cost)
        ret.append(best)
    n_parts = len(times)
    value_at: list[list[float]] = [[]] * (n_parts + 1)
    run_at: list[list[float]] = [[]] * n_parts
    value = ret
    value_at[n_parts] = value
    for p in range(n_parts - 1, -1, -1):
        run = [times[p] * inv_speed[i] + value[i] for i in range(k)]
        run_at[p] = run
        enter = [queue[i] + run[i] for i in range(k)]
        bits = source.bytes_into(bounds[p]) * 8.0
        value = []
        for i in range(k):
            best = run[i]
            for j, lk in enumerate(links[i]):
                if lk is not None:
                    c = bits * lk[0] + lk[1] + enter[j]
                    if c < best:
                        best = c
            value.append(best)
        value_at[p] = value
    p = max(i for i, b in enumerate(bounds) if b <= block)
    if bounds[p] == block:
        rest = run_at[p]
    else:
        t = source.range_time_s(block, bounds[p + 1])
        rest = [t / peers[i].speed + value_at[p + 1][i] for i in range(k)]
    nbytes = source.bytes_into(block)
    out = {here: (queue_of(me), rest[0])}
    for i in range(1, k):
        out[names[i]] = (transfer_s(nbytes, peers[i]) + queue[i], rest[i])
    return out


NAMES = ["a", "b", "c", "d", "e", "f"]


def _sources(rng: random.Random) -> list[SourceView]:
    out = []
    for name, prio in (("ts", 10.0), ("nts", 1.0), ("mid", 3.0)):
        n = rng.randint(1, 20)
        times = tuple(rng.choice([0.0, rng.uniform(1e-3, 0.2)]) for _ in range(n))
        parts = rng.choice([None, 1, 2, 4, 7])
        out.append(SourceView(
            name=name, node=rng.choice([*NAMES, "z"]), model="m", priority=prio, accuracy=rng.choice([1.0, 0.8]),
            block_time_s=times,
            block_out_bytes=tuple(rng.randint(10, rng.choice([20_000, 3_000_000])) for _ in range(n)),
            input_bytes=rng.randint(10, 600_000), result_bytes=rng.randint(4, 5000),
            bounds=split_blocks(times if sum(times) > 0 else [1.0] * n, parts)))
    return out


def _graphs(rng: random.Random) -> list[tuple[dict, dict]]:
    """(links, neighbours) pairs: a full table, a partial one, and no table (the fallback estimate)
    with and without adjacency, the last two sharing one empty ``links`` mapping."""
    full = {(a, b): (rng.uniform(1e6, 1e9), rng.uniform(0, 0.01)) for a, b in itertools.permutations(NAMES, 2)}
    partial = {uv: (rng.choice([0.0, rate]), delay) for uv, (rate, delay) in full.items() if rng.random() < 0.6}
    # "a" reaches everyone (as without adjacency), the others only some: same workers in a's view.
    adjacency = {a: tuple(b for b in NAMES if b != a and (a == "a" or rng.random() < 0.7)) for a in NAMES}
    empty: dict[tuple[str, str], tuple[float, float]] = {}
    return [(full, {}), (partial, {}), (empty, {}), (empty, adjacency)]


def _peer_state(rng: random.Random, name: str, here: bool, speed: float, rate: float = 20e6,
                delay: float = 0.002) -> PeerView:
    q = rng.choice([0.0, rng.uniform(0, 2.0)])
    hi = rng.uniform(0, q)
    waiting = ()
    if here and rng.random() < 0.7:
        waiting = tuple((rng.uniform(0, 5), rng.choice([10.0, 1.0, 3.0, 2.4]), rng.uniform(0, 0.3))
                        for _ in range(rng.randint(0, 6)))
    return PeerView(
        name=name, speed=speed, queue_s=q, rate_bps=math.inf if here else rate, delay_s=0.0 if here else delay,
        alive=here or rng.random() < 0.85,
        success=1.0 if here else rng.choice([1.0, 0.9]),
        queue_by_weight=rng.choice([(), ((1.0, q - hi), (10.0, hi))]), residual_s=rng.uniform(0, 0.05),
        link_backlog_s=0.0 if here else rng.choice([0.0, rng.uniform(0, 0.2)]), waiting=waiting)


@pytest.mark.parametrize("policy", ["pa-mdi", "ms-mdi"])
@pytest.mark.parametrize("seed", range(6))
def test_cached_look_ahead_ranks_exactly_as_the_straightforward_one(
    policy: str, seed: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(seed)
    sources = {s.name: s for s in _sources(rng)}
    graphs = _graphs(rng)
    # A few worker states per node, drawn again and again: views repeat (cache hits) in varying
    # combinations, and decisions come at every block (tables extended backwards, mid-partition).
    # States of a node share its speed and often its link, so only the queues tell them apart.
    speeds = {n: [rng.choice([1.0, 0.5, rng.uniform(0.05, 4.0)]) for _ in range(2)] for n in NAMES}
    links_of = {n: [(rng.uniform(1e6, 1e9), rng.uniform(0, 0.005)), (20e6 * 0.956, 0.002)] for n in NAMES}
    states = {n: [_peer_state(rng, n, False, rng.choice(speeds[n]), *rng.choice(links_of[n])) for _ in range(4)]
              for n in NAMES}
    selves = {n: [_peer_state(rng, n, True, rng.choice(speeds[n])) for _ in range(3)] for n in NAMES}
    fast = get_policy(policy)
    fast.lookahead = LookaheadCache(max_views=4, max_tables=3)  # small: eviction is exercised too
    slow = get_policy(policy)
    checked = 0
    for step in range(600):
        here = rng.choice(NAMES)
        links, neighbours = rng.choice(graphs)
        nbrs = [n for n in NAMES if n != here and (not neighbours or n in neighbours[here])]
        peers = {here: rng.choice(selves[here]), **{n: rng.choice(states[n]) for n in nbrs}}
        world = WorldView(here=here, now_s=rng.uniform(0, 10), peers=peers, sources=sources,
                          speeds={n: p.speed for n, p in peers.items()}, neighbours=neighbours, links=links)
        src = rng.choice(list(sources.values()))
        task = TaskView(f"t{step}", src.name, rng.randrange(src.num_blocks), rng.uniform(0, 10), here)
        got = fast.rank(task, world)
        with monkeypatch.context() as m:
            m.setattr(pa_mdi, "completion_costs", _reference_completion_costs)
            want = slow.rank(task, world)
            reqs = [OffloadRequest(TaskView(f"r{i}", s.name, rng.randrange(s.num_blocks), rng.uniform(0, 10), n),
                                   n, here, 0, 1, rng.uniform(0, 5), s.priority, fallback_index=rng.uniform(0, 5))
                    for i, (n, s) in enumerate((n, rng.choice(list(sources.values()))) for n in nbrs)]
            want_grant = slow.grant(reqs, world)
        assert [(p.node, p.start, p.end, p.index) for p in got] == [(p.node, p.start, p.end, p.index) for p in want]
        assert fast.grant(reqs, world) is want_grant
        checked += len(got) > 1
    assert checked > 100  # most views had a choice to make


def test_tables_are_not_shared_between_graphs_that_differ_only_in_adjacency() -> None:
    # No link table (the fallback estimate): whether b may forward to c comes from the adjacency
    # alone, and it changes b's best completion. Both views share the same (empty) links mapping.
    times = (0.02,) * 6
    src = SourceView(name="ts", node="a", model="m", priority=1.0, accuracy=1.0, block_time_s=times,
                     block_out_bytes=(1000,) * 6, input_bytes=1000, result_bytes=40,
                     bounds=split_blocks(times, None))
    peers = {"a": PeerView("a", 0.1, 0.0, math.inf), "b": PeerView("b", 1.0, 0.0, 20e6, 0.001),
             "c": PeerView("c", 10.0, 0.01, 20e6, 0.001)}
    links: dict[tuple[str, str], tuple[float, float]] = {}
    mesh = WorldView(here="a", now_s=0.0, peers=peers, sources={"ts": src}, links=links)
    no_bc = WorldView(here="a", now_s=0.0, peers=peers, sources={"ts": src}, links=links,
                      neighbours={"a": ("b", "c"), "b": ("a",), "c": ("a",)})
    task = TaskView("ts-0", "ts", 0, 0.0, "a")
    cached = get_policy("pa-mdi")
    got = [[(p.node, p.index) for p in cached.rank(task, w)] for w in (mesh, no_bc, mesh)]
    want = [[(p.node, p.index) for p in get_policy("pa-mdi").rank(task, w)] for w in (mesh, no_bc, mesh)]
    assert got == want
    assert dict(want[0])["b"] < dict(want[1])["b"]  # forwarding to c helps b
