"""The worker core (``pamdi_node.worker``) on its own: the queue ledger against a plain recomputation,
a plan's steps, the grant window. The two drivers (agent and simulator) are compared in
``test_agent_parity.py``."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from pamdi_node.policies.types import OffloadRequest, PeerView, Placement, PolicyDefaults, TaskView, WorldView
from pamdi_node.worker import GrantWindow, PlacementError, QueueLedger, choose_grant, make_plan, next_step


@dataclass
class Item:
    est_s: float
    after_s: float
    weight: float
    born: float
    key: tuple[float, ...]
    source: str
    live: bool = True


def test_ledger_serves_by_key_and_accounts_like_a_recount() -> None:
    rng = random.Random(7)
    ledger: QueueLedger[Item] = QueueLedger()
    items = [Item(rng.uniform(0.01, 0.2), rng.choice([0.0, rng.uniform(0, 0.5)]), rng.choice([1.0, 8.0]),
                  rng.uniform(-1, 0), (rng.choice([1.0, 2.0, 3.0]),), rng.choice(["ts", "nts"])) for _ in range(40)]
    for it in items:
        ledger.push(it, it.key, it.source)
    # Service order: key, then source, then arrival (a stable sort of the arrivals is that order).
    want = sorted(range(len(items)), key=lambda i: (items[i].key, items[i].source, i))
    first = ledger.pop()
    assert first is items[want[0]]
    ledger.start(first, until=10.0)
    now = 10.0 - 0.25 * first.est_s if first.est_s > 0 else 10.0
    rest = [items[i] for i in want[1:]]
    d = ledger.detail(now, list_waiting=True)
    # The recount: queued items whole, the one in service by its residual, its after_s by weight.
    residual = 10.0 - now
    assert d.residual_s == pytest.approx(residual)
    assert d.total_s == pytest.approx(sum(x.est_s + x.after_s for x in rest) + residual + first.after_s)
    by_w: dict[float, float] = {}
    for x in rest:
        by_w[x.weight] = by_w.get(x.weight, 0.0) + x.est_s + x.after_s
    if first.after_s > 0:
        by_w[first.weight] = by_w.get(first.weight, 0.0) + first.after_s
    assert dict(d.by_weight) == pytest.approx(by_w)
    listed = sorted([(x.born, x.weight, x.est_s + x.after_s) for x in rest]
                    + ([(first.born, first.weight, first.after_s)] if first.after_s > 0 else []))
    assert len(d.waiting) == len(listed)
    for got, exp in zip(sorted(d.waiting), listed, strict=True):
        assert got == pytest.approx(exp)
    # Past the modelled end the residual is 0, not negative.
    assert ledger.load(11.0)[1] == 0.0
    ledger.finish()
    # Stale items are skipped (and leave the totals) on the way to the next live one.
    for i in want[1:4]:
        items[i].live = False
    nxt = ledger.pop(lambda x: x.live)
    assert nxt is items[want[4]]
    assert ledger.queued_s == pytest.approx(sum(items[i].est_s + items[i].after_s for i in want[5:]))
    lost = ledger.clear()
    assert len(lost) == len(want) - 5 and ledger.load(0.0) == (0.0, 0.0, ())


def test_an_emptied_ledger_is_exactly_empty_and_its_beacon_encodes() -> None:
    """Pushing and popping floats leaves dust in running sums (0.1 + 0.2 - 0.1 - 0.2 != 0). An empty
    queue must read as exactly empty: a negative total (-4e-17) made the agent's own beacon fail the
    wire check, its peers then counted it dead and it idled for the rest of the run."""
    from pamdi_node import wire

    rng = random.Random(3)
    ledger: QueueLedger[Item] = QueueLedger()
    dusty = 0
    for _ in range(300):
        items = [Item(rng.uniform(1e-4, 0.05), rng.uniform(0, 0.05), 10.0, 0.0, (rng.random(),), "ts")
                 for _ in range(rng.randint(1, 5))]
        for it in items:
            ledger.push(it, it.key, it.source)
        # what a bare running sum would hold after the same pops: the dust the ledger must not keep
        acc = 0.0
        for it in items:
            acc += it.est_s + it.after_s
        while (it := ledger.pop()) is not None:
            acc -= it.est_s + it.after_s
        dusty += acc != 0.0
        total, residual, by_weight = ledger.load(0.0)
        assert (total, residual, by_weight) == (0.0, 0.0, ())
        d = ledger.detail(0.0)
        body = {"speed": 1.0, "queue_s": d.total_s, "seq": 1, "by_weight": [list(x) for x in d.by_weight],
                "residual_s": d.residual_s}
        wire.decode(wire.encode(wire.BEACON, "a", body))  # refused before the fix whenever acc < 0
    assert dusty > 0  # the sequences did leave dust in a plain sum: the test exercises the case


class _Ranked(PolicyDefaults):
    name = "ranked"
    priority_queue = True
    handshake = True

    def __init__(self, placements: list[Placement]) -> None:
        self.placements = placements

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]:
        return (task.born_s,)

    def rank(self, task: TaskView, world: WorldView) -> list[Placement]:
        return self.placements

    def grant(self, requests: list[OffloadRequest], world: WorldView) -> OffloadRequest | None:
        raise RuntimeError("a policy bug")


def _world(dead: frozenset[str] = frozenset()) -> WorldView:
    peers = {n: PeerView(name=n, speed=1.0, queue_s=0.0, rate_bps=1e7, alive=n not in dead) for n in "abc"}
    return WorldView(here="a", now_s=0.0, peers=peers, sources={})


def test_plan_filters_walks_and_falls_back() -> None:
    tv = TaskView("t-0", "ts", 2, 0.0, "a")
    ranked = [Placement("b", 2, 4, 0.5), Placement("c", 2, 6, 0.7), Placement("a", 2, 3, 0.9),
              Placement("b", 2, 5, 1.1)]
    plan = make_plan(_Ranked(ranked), tv, _world(dead=frozenset({"c"})), num_blocks=6, partition_end=4)
    # c is dead: dropped; the holder's own alternative is its best index among the usable ones.
    assert [(p.node, p.end) for p in plan.candidates] == [("b", 4), ("a", 3), ("b", 5)]
    assert plan.handshake and plan.fallback_index == 0.9
    # A self placement this node may not run is skipped; after the last candidate the partition
    # runs here, or the task fails when it may not.
    def allowed(s: int, e: int) -> bool:
        return e <= 3

    steps = [next_step(plan, allowed) for _ in range(3)]
    assert [(s.action, s.node, s.start, s.end) for s in steps] == [
        ("offer", "b", 2, 4), ("run", "a", 2, 3), ("offer", "b", 2, 5)]
    last = next_step(plan, allowed)
    assert last.action == "fail" and "cannot run blocks [2,4)" in last.reason
    assert next_step(make_plan(_Ranked([]), tv, _world(), 6, 4))[:4] == ("run", "a", 2, 4)


def test_strict_plans_refuse_malformed_rankings_and_lenient_ones_drop_them() -> None:
    tv = TaskView("t-0", "ts", 2, 0.0, "a")
    for bad in (Placement("b", 1, 4, 0.1), Placement("a", 2, 2, 0.1), Placement("z", 2, 4, 0.1),
                Placement("b", 2, 9, 0.1)):
        with pytest.raises(PlacementError):
            make_plan(_Ranked([bad]), tv, _world(), 6, 4, strict=True)
        plan = make_plan(_Ranked([bad]), tv, _world(), 6, 4)
        assert plan.candidates == [] and math.isinf(plan.fallback_index)
    with pytest.raises(PlacementError, match="no placement"):
        make_plan(_Ranked([]), tv, _world(), 6, 4, strict=True)


def test_grant_window_collects_then_closes_and_a_failing_grant_clears_nothing() -> None:
    w: GrantWindow[str] = GrantWindow()
    assert w.add("r1", 1.0, 0.002) and w.closes_at == pytest.approx(1.002)
    assert not w.add("r2", 1.001, 0.002) and w.closes_at == pytest.approx(1.002)
    assert w.close() == ["r1", "r2"] and w.closes_at is None and w.pending == []
    req = OffloadRequest(TaskView("t", "ts", 0, 0.0, "b"), "b", "a", 0, 2, 0.5, 10.0)
    assert choose_grant(_Ranked([]), [req], _world()) is None
    with pytest.raises(RuntimeError):
        choose_grant(_Ranked([]), [req], _world(), strict=True)
