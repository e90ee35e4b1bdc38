"""Decision policies: pure, deterministic, and doing what their docstrings say."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from pamdi_node.models.profile import BlockProfile, ModelProfile
from pamdi_node.policies import POLICIES, get_policy, params_for
from pamdi_node.policies.graph import chain_shares, plan_chain, shortest_paths
from pamdi_node.policies.partition import partition_end, source_view_from_profile, split_blocks
from pamdi_node.policies.types import OffloadRequest, PeerView, Placement, Policy, SourceView, TaskView, WorldView


def _source(name: str = "ts", node: str = "a", priority: float = 10.0, times=(0.01,) * 8,
            out_bytes: int = 100_000, partitions: int | None = None) -> SourceView:
    return SourceView(
        name=name, node=node, model="tiny", priority=priority, accuracy=1.0,
        block_time_s=tuple(times), block_out_bytes=(out_bytes,) * len(times), input_bytes=50_000,
        result_bytes=40, bounds=split_blocks(times, partitions),
    )


def _peer(name: str, queue: float = 0.0, speed: float = 1.0, rate: float = 20e6, delay: float = 0.001,
          alive: bool = True, by_weight: tuple = (), residual: float = 0.0) -> PeerView:
    return PeerView(name=name, speed=speed, queue_s=queue, rate_bps=rate, delay_s=delay, alive=alive,
                    queue_by_weight=by_weight, residual_s=residual)


def _world(here: str, peers: list[PeerView], sources: list[SourceView], now: float = 1.0) -> WorldView:
    return WorldView(here=here, now_s=now, peers={p.name: p for p in peers}, sources={s.name: s for s in sources},
                     speeds={p.name: p.speed for p in peers})


def test_split_blocks_equal_time_and_nonempty() -> None:
    assert split_blocks([1, 1, 1, 1], 2) == (0, 2, 4)
    assert split_blocks([3, 1, 1, 1], 2) == (0, 1, 4)
    assert split_blocks([1.0] * 5, None) == (0, 1, 2, 3, 4, 5)
    b = split_blocks([0.0, 0.0, 5.0, 0.0], 3)
    assert b[0] == 0 and b[-1] == 4 and all(x < y for x, y in itertools.pairwise(b))
    with pytest.raises(ValueError):
        split_blocks([], 1)


def test_source_view_from_profile_refuses_untimed_and_cuts_partitions() -> None:
    blocks = tuple(BlockProfile(index=i, name=f"b{i}", flops=10, param_bytes=0, out_shape=(1,), out_bytes=4 * (i + 1),
                                time_s=t) for i, t in enumerate([0.1, 0.1, 0.2, 0.2]))
    prof = ModelProfile(model="tiny", batch=1, input_shape=(1,), input_bytes=8, result_bytes=4, blocks=blocks)
    sv = source_view_from_profile("s", "a", prof, priority=3, partitions=2)
    assert sv.bounds == (0, 3, 4) or sv.bounds == (0, 2, 4)
    assert sv.bytes_into(0) == 8 and sv.bytes_into(2) == 8
    assert partition_end(sv, 0) == sv.bounds[1]
    untimed = prof.model_copy(update={"blocks": tuple(b.model_copy(update={"time_s": None}) for b in blocks)})
    with pytest.raises(ValueError, match="no block timings"):
        source_view_from_profile("s", "a", untimed)


def test_chain_shares_follow_speed() -> None:
    src = _source(times=(0.01,) * 12)
    chain = plan_chain("a", {"a": 1.0, "b": 2.0, "c": 1.0}, {})
    assert chain == ("a", "b", "c")
    shares = chain_shares(src, chain, {"a": 1.0, "b": 2.0, "c": 1.0})
    assert [(p.node, p.start, p.end) for p in shares] == [("a", 0, 3), ("b", 3, 9), ("c", 9, 12)]
    # multi-hop: the walk only steps to neighbours
    nbrs = {"a": ("b",), "b": ("a", "c", "d"), "c": ("b",), "d": ("b",)}
    assert plan_chain("a", {"a": 1, "b": 1, "c": 1, "d": 3}, nbrs) == ("a", "b", "d")


def test_shortest_paths_deterministic() -> None:
    nbrs = {"a": ("b", "c"), "b": ("a", "d"), "c": ("a", "d"), "d": ("b", "c")}
    paths = shortest_paths("a", nbrs, lambda u, v: 1.0)
    assert paths["d"] == ("a", "b", "d")


def test_all_policies_satisfy_protocol_and_are_deterministic() -> None:
    ts, nts = _source(), _source("nts", "b", priority=1.0)
    peers = [_peer("a", queue=0.05), _peer("b", queue=0.2), _peer("c", queue=0.0, speed=2.0)]
    task = TaskView("ts-3", "ts", 2, 0.5, "a")
    for name in POLICIES:
        p1, p2 = get_policy(name), get_policy(name)
        assert isinstance(p1, Policy)
        w = _world("a", peers, [ts, nts])
        r1, r2 = p1.rank(task, w), p2.rank(task, w)
        assert r1 == r2 and len(r1) >= 1
        assert all(pl.end > pl.start == 2 or name == "ddi" for pl in r1)


def test_pa_mdi_ts_sees_nts_backlog_as_free_but_nts_does_not() -> None:
    ts, nts = _source(), _source("nts", "b", priority=1.0)
    # Neighbour c is busy with 1 s of NTS work (weight 1); a's own queue has 0.3 s of TS work.
    peers = [_peer("a", queue=0.3, by_weight=((10.0, 0.3),)), _peer("c", queue=1.0, by_weight=((1.0, 1.0),))]
    pol = get_policy("pa-mdi")
    ts_rank = pol.rank(TaskView("ts-1", "ts", 1, 0.9, "a"), _world("a", peers, [ts, nts]))
    nts_rank = pol.rank(TaskView("nts-1", "nts", 1, 0.9, "a"), _world("a", peers, [ts, nts]))
    assert ts_rank[0].node == "c"  # TS jumps c's NTS backlog
    assert nts_rank[0].node == "a"  # NTS would wait behind it
    # MS-MDI (no priorities) sees c's full queue for the TS task too
    assert get_policy("ms-mdi").rank(TaskView("ts-1", "ts", 1, 0.9, "a"), _world("a", peers, [ts, nts]))[0].node == "a"
    # index value: (comm + age + compute + queue + result home) / gamma for c; equal speeds, so the
    # look-ahead's best completion from c is to finish there (7 blocks) and send the 40-byte result
    # back to a over the c-a link (assumed like a-c: the view has no link table).
    comm = 100_000 * 8 / 20e6 + 0.001
    home = 40 * 8 / 20e6 + 0.001
    expected = (comm + 0.1 + 7 * 0.01 + 0.0 + home) / 10.0
    assert ts_rank[0].index == pytest.approx(expected)


def test_pa_mdi_excludes_dead_and_queue_order_prefers_ts() -> None:
    ts, nts = _source(), _source("nts", "b", priority=1.0)
    peers = [_peer("a", queue=5.0), _peer("c", alive=False), _peer("d", queue=0.5)]
    pol = get_policy("pa-mdi")
    ranked = pol.rank(TaskView("ts-1", "ts", 0, 0.0, "a"), _world("a", peers, [ts, nts]))
    assert [p.node for p in ranked] == ["d", "a"]
    w = _world("a", peers, [ts, nts])
    k_ts = pol.queue_key(TaskView("ts-9", "ts", 0, 5.0, "a"), w)
    k_nts = pol.queue_key(TaskView("nts-1", "nts", 0, 4.0, "a"), w)
    assert k_ts < k_nts
    # aging: a very old NTS task eventually goes first
    k_old = pol.queue_key(TaskView("nts-0", "nts", 0, -1000.0, "a"), w)
    assert k_old < k_ts


def test_pa_mdi_grant_smallest_index_and_recheck() -> None:
    ts, nts = _source(), _source("nts", "b", priority=1.0)
    here = "c"
    peers = [_peer("c", queue=0.0), _peer("a"), _peer("b")]
    w = _world(here, peers, [ts, nts])
    pol = get_policy("pa-mdi")
    r_ts = OffloadRequest(TaskView("ts-1", "ts", 2, 0.9, "a"), "a", "c", 2, 3, 0.02, 10.0, fallback_index=1.0)
    r_nts = OffloadRequest(TaskView("nts-1", "nts", 2, 0.9, "b"), "b", "c", 2, 3, 0.2, 1.0, fallback_index=5.0)
    assert pol.grant([r_nts, r_ts], w) is r_ts
    assert pol.grant([r_ts, r_nts], w) is r_ts
    # receiver is actually loaded (stale beacon): fresh index exceeds the sender's local option
    busy = _world(here, [_peer("c", queue=10.0), _peer("a"), _peer("b")], [ts, nts])
    tight = OffloadRequest(TaskView("ts-1", "ts", 2, 0.9, "a"), "a", "c", 2, 3, 0.02, 10.0, fallback_index=0.05)
    assert pol.grant([tight], busy) is None


def test_pa_mdi_recheck_weighs_the_fallback_as_of_when_the_sender_scored_it() -> None:
    """The RTC's trip and the grant window age the task; the sender's fallback was scored before
    that. Compared at the same instant, an offer whose receiver is exactly as the sender saw it is
    cleared; compared with the receiver's later clock (no ``scored_s``), the age alone denies it."""
    nts = _source("nts", "b", priority=1.0)
    born, scored, delay = 0.0, 1.0, 0.004  # the RTC reaches c 4 ms after b scored it
    pol = get_policy("pa-mdi")
    tv = TaskView("nts-1", "nts", 2, born, "b")
    at_c = _world("c", [_peer("c", queue=0.0), _peer("b")], [nts])
    w_then = dataclasses.replace(at_c, now_s=scored)
    w_now = dataclasses.replace(at_c, now_s=scored + delay)
    src, me, link = w_then.sources["nts"], w_then.peers["c"], w_then.peers["b"]
    then = pol.index(tv, src, me, "c", scored, sender=link, world=w_then)
    # The sender's fallback: barely worse than c as of then (so it offered), better than c aged by the trip.
    fallback = then * (1 + 1e-6)
    assert pol.index(tv, src, me, "c", scored + delay, sender=link, world=w_now) > fallback
    req = OffloadRequest(tv, "b", "c", 2, 3, then, 1.0, fallback_index=fallback, scored_s=scored)
    assert pol.grant([req], w_now) is req
    assert pol.grant([dataclasses.replace(req, scored_s=None)], w_now) is None
    # A receiver that did get busier since still denies, at the sender's instant too.
    busy = dataclasses.replace(w_now, peers={**w_now.peers, "c": _peer("c", queue=0.5)})
    assert pol.grant([req], busy) is None


def test_static_policy_follows_routes_in_fraction() -> None:
    src = _source(times=(0.01,) * 6)
    plan = {"ts": [[0.75, [["a", 0, 6]]], [0.25, [["a", 0, 2], ["b", 2, 2], ["c", 2, 6]]]]}
    pol = get_policy("pa-mdi-static", plan=plan)
    peers = [_peer("a"), _peer("b")]
    counts = {"a": 0, "b": 0}
    for i in range(400):
        first = pol.rank(TaskView(f"ts-{i}", "ts", 0, 0.0, "a"), _world("a", peers, [src]))[0]
        if first.end == 6:
            counts["a"] += 1
        else:
            nxt = pol.rank(TaskView(f"ts-{i}", "ts", 2, 0.0, "a"), _world("a", peers, [src]))[0]
            assert (nxt.node, nxt.start, nxt.end) == ("b", 2, 2)
            relay = pol.rank(TaskView(f"ts-{i}", "ts", 2, 0.0, "b"), _world("b", [_peer("b"), _peer("c")], [src]))[0]
            assert (relay.node, relay.start, relay.end) == ("c", 2, 6)
            counts["b"] += 1
    assert abs(counts["a"] / 400 - 0.75) < 0.01
    with pytest.raises(ValueError, match=r"plan\['ts'\]\[0\]"):
        get_policy("pa-mdi-static", plan={"ts": [[0.5]]})


def test_get_policy_and_params_errors_name_the_fault() -> None:
    with pytest.raises(ValueError, match="unknown policy 'x'"):
        get_policy("x")
    with pytest.raises(ValueError, match="no parameter 'agin'"):
        get_policy("pa-mdi", agin=1)
    assert params_for("pa-mdi", {"aging": 0.1, "chain_length": 2, "pa-mdi.horizon": "partition"}) == {
        "aging": 0.1, "horizon": "partition"}
    assert params_for("ar-mdi", {"aging": 0.1, "chain_length": 2}) == {"chain_length": 2}
    with pytest.raises(ValueError, match=r"policy_params\.bogus"):
        params_for("pa-mdi", {"bogus": 1})
    assert math.isinf(OffloadRequest(TaskView("t-1", "ts", 0, 0, "a"), "a", "b", 0, 1, 0, 1).fallback_index)


def _links(world_nodes: list[str], rate: float, delay: float = 0.001) -> dict[tuple[str, str], tuple[float, float]]:
    return {(a, b): (rate, delay) for a in world_nodes for b in world_nodes if a != b}


def test_ar_mdi_shares_follow_speed_when_communication_is_negligible() -> None:
    # Fast links: the min-bottleneck chain uses every worker with stage times equalised, i.e. the
    # classic speed-proportional shares (the same cut as ``chain_shares``).
    src = _source(times=(0.01,) * 12, out_bytes=10)
    peers = [_peer("a", rate=1e12), _peer("b", speed=2.0, rate=1e12), _peer("c", rate=1e12)]
    world = WorldView(here="a", now_s=0.0, peers={p.name: p for p in peers}, sources={"ts": src},
                      speeds={"a": 1.0, "b": 2.0, "c": 1.0}, links=_links(["a", "b", "c"], 1e12, 0.0))
    plan = get_policy("ar-mdi").plan(src, world)  # type: ignore[attr-defined]
    assert [(p.node, p.start, p.end) for p in plan] == [("a", 0, 3), ("b", 3, 9), ("c", 9, 12)]
    assert plan[0].index == pytest.approx(0.03)  # every stage 30 ms: total 120 ms over 4 speed units
    shares = chain_shares(src, ("a", "b", "c"), {"a": 1.0, "b": 2.0, "c": 1.0})
    assert [(p.node, p.start, p.end) for p in plan] == [(p.node, p.start, p.end) for p in shares]


def test_ar_mdi_cuts_where_transfers_are_cheap_and_skips_dead_workers() -> None:
    # 8 blocks of 10 ms; activations are 1 MB except after block 6 (10 KB); input 50 KB; 20 Mbit/s.
    # Enumerated by hand: any cut but 6 costs >= 20 ms (input) or 400 ms; cut 6 gives stages
    # (60 ms, 4 ms, 20 ms): bottleneck 60 ms < 80 ms local. So: a runs [0, 6), a neighbour the rest.
    times = (0.01,) * 8
    src = SourceView(name="ts", node="a", model="tiny", priority=1.0, accuracy=1.0, block_time_s=times,
                     block_out_bytes=(1_000_000,) * 5 + (10_000, 1_000_000, 40), input_bytes=50_000,
                     result_bytes=40, bounds=split_blocks(times, None))
    # (input at 20 Mbit/s is 20 ms, so "ship the input, b runs [0, 4), c the rest" would also need
    # a 1 MB cut; the best 3-stage plan is no better than 60 ms.)
    names = ["a", "b", "c"]
    peers = [_peer(n) for n in names]
    world = WorldView(here="a", now_s=0.0, peers={p.name: p for p in peers}, sources={"ts": src},
                      speeds=dict.fromkeys(names, 1.0), links=_links(names, 20e6))
    pol = get_policy("ar-mdi")
    plan = pol.plan(src, world)  # type: ignore[attr-defined]
    assert [(p.node, p.start, p.end) for p in plan] == [("a", 0, 6), ("b", 6, 8)]
    assert plan[0].index == pytest.approx(0.06)
    # b dead (missed beacons): the chain uses c instead, and a holder routes there.
    dead = WorldView(here="a", now_s=0.0, peers={"a": peers[0], "b": _peer("b", alive=False), "c": peers[2]},
                     sources={"ts": src}, speeds=dict.fromkeys(names, 1.0), links=_links(names, 20e6))
    assert [(p.node, p.start, p.end) for p in pol.plan(src, dead)] == [("a", 0, 6), ("c", 6, 8)]  # type: ignore[attr-defined]
    assert pol.rank(TaskView("ts-1", "ts", 6, 0.0, "a"), dead)[0] == Placement("c", 6, 8, pytest.approx(0.06))
    assert pol.rank(TaskView("ts-1", "ts", 0, 0.0, "a"), dead)[0].node == "a"
    # Links so slow that every cut loses: the source runs everything.
    slow = WorldView(here="a", now_s=0.0, peers={p.name: _peer(p.name, rate=1e5) for p in peers}, sources={"ts": src},
                     speeds=dict.fromkeys(names, 1.0), links=_links(names, 1e5))
    assert [(p.node, p.start, p.end) for p in pol.plan(src, slow)] == [("a", 0, 8)]  # type: ignore[attr-defined]


def test_pa_mdi_look_ahead_finds_the_cheap_late_cut() -> None:
    # A slow source (speed 0.25) with a big input and big early activations but a small one after
    # block 3, and an idle neighbour 4x faster. "Ship the input now" and "finish here" both lose to
    # "compute blocks 0-2 here, then ship the small activation": the look-ahead ranks the holder
    # first with exactly that plan's time; the one-step ("rest") index sends the input.
    times = (0.004, 0.004, 0.004, 0.02, 0.02, 0.02)
    src = SourceView(name="ts", node="a", model="tiny", priority=1.0, accuracy=1.0, block_time_s=times,
                     block_out_bytes=(500_000, 500_000, 5_000, 500_000, 500_000, 40), input_bytes=300_000,
                     result_bytes=40, bounds=split_blocks(times, None))
    rate, delay = 20e6, 0.001
    peers = [_peer("a", speed=0.25, rate=rate, delay=delay), _peer("b", rate=rate, delay=delay)]
    world = WorldView(here="a", now_s=0.0, peers={p.name: p for p in peers}, sources={"ts": src},
                      speeds={"a": 0.25, "b": 1.0}, links=_links(["a", "b"], rate, delay))
    home = 40 * 8 / rate + delay
    plans = {
        "finish here": sum(times) / 0.25,
        "ship input": 300_000 * 8 / rate + delay + sum(times) + home,
        "late cut": sum(times[:3]) / 0.25 + 5_000 * 8 / rate + delay + sum(times[3:]) + home,
    }
    assert min(plans, key=plans.__getitem__) == "late cut"
    ranked = get_policy("pa-mdi").rank(TaskView("ts-0", "ts", 0, 0.0, "a"), world)
    assert ranked[0].node == "a" and ranked[0].index == pytest.approx(plans["late cut"])
    assert ranked[1].node == "b" and ranked[1].index == pytest.approx(plans["ship input"])
    rest = get_policy("pa-mdi", horizon="rest").rank(TaskView("ts-0", "ts", 0, 0.0, "a"), world)
    assert rest[0].node == "b"


def test_queue_ahead_is_queue_minus_lower_weights() -> None:
    p = _peer("c", queue=1.5, by_weight=((1.0, 1.0), (10.0, 0.3)), residual=0.2)
    assert p.queue_ahead_s(10.0) == pytest.approx(0.5)  # residual + TS work
    assert p.queue_ahead_s(1.0) == 1.5  # everything, exactly
    assert _peer("c", queue=0.7, by_weight=((1.0, 0.7),)).queue_ahead_s(1.0) == 0.7


def test_holder_counts_exactly_the_work_its_queue_order_serves_first() -> None:
    # The holder's own queue task by task: an older TS task (0.2 s), a newer TS task (0.3 s), an
    # old NTS task (0.4 s), 10 ms left of the partition in service. For a TS task born at 1.0:
    # PA-MDI (EDF, TS deadlines 1 s, NTS 10 s after birth) serves only the older TS task first;
    # MS-MDI (FIFO) serves the older TS and the older NTS task first.
    ts, nts = _source(), _source("nts", "b", priority=1.0)
    me = PeerView(name="a", speed=1.0, queue_s=0.91, rate_bps=math.inf, queue_by_weight=((1.0, 0.4), (10.0, 0.5)),
                  residual_s=0.01, waiting=((0.5, 10.0, 0.2), (2.0, 10.0, 0.3), (0.1, 1.0, 0.4)))
    world = WorldView(here="a", now_s=3.0, peers={"a": me}, sources={"ts": ts, "nts": nts})
    task = TaskView("ts-1", "ts", 0, 1.0, "a")
    rest, age = 8 * 0.01, 2.0
    pa = get_policy("pa-mdi").rank(task, world)[0]
    assert pa.index == pytest.approx((0.01 + 0.2 + rest + age) / 10.0)
    ms = get_policy("ms-mdi").rank(task, world)[0]
    assert ms.index == pytest.approx(0.01 + 0.2 + 0.4 + rest + age)
    # Without the list, the per-weight totals: all TS work (0.5) for PA-MDI, everything for MS-MDI.
    blind = WorldView(here="a", now_s=3.0, peers={"a": PeerView(**{**me.__dict__, "waiting": ()})},
                      sources={"ts": ts, "nts": nts})
    assert get_policy("pa-mdi").rank(task, blind)[0].index == pytest.approx((0.01 + 0.5 + rest + age) / 10.0)
    assert get_policy("ms-mdi").rank(task, blind)[0].index == pytest.approx(0.91 + rest + age)


def test_split_blocks_default_and_per_block_word() -> None:
    from pamdi_node.policies.partition import DEFAULT_PARTITIONS, PER_BLOCK

    assert DEFAULT_PARTITIONS == 4 and PER_BLOCK == "blocks"
    assert split_blocks([1.0] * 8, DEFAULT_PARTITIONS) == (0, 2, 4, 6, 8)
    assert split_blocks([1.0] * 3, DEFAULT_PARTITIONS) == (0, 1, 2, 3)  # fewer blocks: one per block
    assert split_blocks([1.0] * 5, PER_BLOCK) == split_blocks([1.0] * 5, None) == (0, 1, 2, 3, 4, 5)
    for bad in ("block", 2.0, True):
        with pytest.raises(ValueError, match="partitions"):
            split_blocks([1.0] * 5, bad)  # type: ignore[arg-type]
