"""Simulator: time-varying (radio scenario) links, runtime costs, compute intervals.

Every expected value is computed by hand from the spec (rates x LINK_GOODPUT_FACTOR, delays,
profiled times / speed), independently of the engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

import radio_scenarios
from orchestrator.backends.base import AgentEndpoint
from orchestrator.metrics import COMPLETED
from orchestrator.simulator import (
    LinkSchedule,
    SimOptions,
    SimulationError,
    build_simulator,
    load_profiles,
    simulate,
    source_views,
)
from orchestrator.simulator.engine import Simulator
from orchestrator.simulator.inputs import FailureConfig, LinkConfig, NodeConfig, SimSource
from pamdi_node.policies.partition import partition_end, source_view_from_profile
from pamdi_node.policies.types import (
    LINK_GOODPUT_FACTOR,
    OffloadRequest,
    Placement,
    PolicyDefaults,
    TaskView,
    WorldView,
)
from tests.test_simulator_support import spec, synthetic_profile

G = LINK_GOODPUT_FACTOR
# One block of 1 s (at speed 1); a is 10x slower than b, so DDI sends the whole input to b.
BIG_INPUT = 1_434_000  # 11,472,000 bits = 1.5 s at 8 Mbit/s x 0.956
ONE_BLOCK = {"tiny": synthetic_profile("tiny", (1.0,), (40,), input_bytes=BIG_INPUT, result_bytes=40)}


def _scenarios(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **entries: dict[str, Any]) -> None:
    """User scenarios (``$PAMDI_SCENARIOS_DIR``) for this test only."""
    monkeypatch.setenv("PAMDI_SCENARIOS_DIR", str(tmp_path))
    for name, body in entries.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "description": "test", **body}))


def _two_nodes(scenario: str | None, *, start_ms: float = 0.0, rate_mbit: float = 100.0, delay_ms: float = 1.0,
               samples: int = 1) -> Any:
    link: dict[str, Any] = {"a": "a", "b": "b", "rate_mbit": rate_mbit, "delay_ms": delay_ms}
    if scenario is not None:
        link["scenario"] = scenario
    return spec(nodes=[{"name": "a", "speed": 0.1}, {"name": "b", "speed": 1.0}], links=[link],
                sources=[{"name": "s", "node": "a", "model": "tiny", "samples": samples, "interval_ms": 10_000,
                          "start_ms": start_ms}])


HALVE = {"points": [{"t_s": 0, "rate_mbit": 8, "delay_ms": 5}, {"t_s": 1, "rate_mbit": 4, "delay_ms": 20}]}


# ---------------------------------------------------------------------------- time-varying links
def test_rate_halves_while_the_input_is_on_the_wire(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _scenarios(monkeypatch, tmp_path, **{"test-halve": HALVE})
    res = simulate(_two_nodes("test-halve"), "ddi", profiles=ONE_BLOCK)
    (r,) = res.records
    assert r.status == COMPLETED and r.placements == (("b", 0, 1),)
    g0, g1 = 8e6 * G, 4e6 * G
    bits = BIG_INPUT * 8
    # 1 s at g0, the rest at g1 (= g0 / 2): 0.5 s of g0-work takes 1 s; the delay is the one in
    # force when the last bit leaves (20 ms); b computes 1 s; the result goes back at g1 + 20 ms.
    left = bits - 1.0 * g0
    arrive = 1.0 + left / g1 + 0.020
    assert arrive == pytest.approx(2.02, rel=1e-12)
    expected = arrive + 1.0 + 40 * 8 / g1 + 0.020
    assert r.done_s == pytest.approx(expected, rel=1e-9)
    # Not what a constant 8 Mbit/s link (or the spec's own 100 Mbit/s) would give.
    assert abs(r.done_s - (bits / g0 + 0.005 + 1.0 + 320 / g0 + 0.005)) > 0.4


def test_scenario_offset_shifts_the_phase(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _scenarios(monkeypatch, tmp_path, **{"test-halve": HALVE})
    res = simulate(_two_nodes("test-halve"), "ddi", profiles=ONE_BLOCK, options=SimOptions(scenario_offset_s=1.0))
    g1 = 4e6 * G
    assert res.records[0].done_s == pytest.approx(BIG_INPUT * 8 / g1 + 0.020 + 1.0 + 320 / g1 + 0.020, rel=1e-9)


SQUARE = [{"t_s": 0, "rate_mbit": 8}, {"t_s": 1, "rate_mbit": 2}]
SQUARE_BYTES = 956_000  # 7,648,000 bits = 0.5 s at 8 Mbit/s + 1 s at 2 + 0.25 s at 8 (x 0.956)


def test_looping_scenario_repeats_with_the_default_period(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No period_s: one period = last point + the previous step = 2 s. The task starts at 2.5 s,
    # i.e. 0.5 s into the second period's fast phase.
    _scenarios(monkeypatch, tmp_path, **{"test-square": {"loop": True, "points": SQUARE}})
    assert radio_scenarios.get("test-square").period == 2.0
    prof = {"tiny": synthetic_profile("tiny", (1.0,), (40,), input_bytes=SQUARE_BYTES, result_bytes=40)}
    res = simulate(_two_nodes("test-square", start_ms=2500), "ddi", profiles=prof)
    (r,) = res.records
    g8, g2 = 8e6 * G, 2e6 * G
    assert pytest.approx(SQUARE_BYTES * 8, rel=1e-12) == 0.5 * g8 + 1.0 * g2 + 0.25 * g8
    arrive = 4.25  # 3.0 (end of fast), 4.0 (end of slow), + 0.25 s fast
    # b computes until 5.25 = 1.25 s into the third period: the slow phase.
    assert r.done_s == pytest.approx(arrive + 1.0 + 320 / g2, rel=1e-9)
    assert r.latency_s == pytest.approx(arrive - 2.5 + 1.0 + 320 / g2, rel=1e-9)


def test_scenario_without_loop_stays_at_its_last_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _scenarios(monkeypatch, tmp_path, **{"test-square-once": {"points": SQUARE}})
    prof = {"tiny": synthetic_profile("tiny", (1.0,), (40,), input_bytes=SQUARE_BYTES, result_bytes=40)}
    (r,) = simulate(_two_nodes("test-square-once", start_ms=2500), "ddi", profiles=prof).records
    g2 = 2e6 * G
    assert r.done_s == pytest.approx(2.5 + SQUARE_BYTES * 8 / g2 + 1.0 + 320 / g2, rel=1e-9)


def test_physical_link_follows_scenario_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The netns backend drives a link with Scenario.at(t); the simulator's link is the same
    # function of time (both directions), for the shipped looping scenarios too.
    _scenarios(monkeypatch, tmp_path, **{"test-square": {"loop": True, "points": SQUARE}})
    for name in ("wifi-fluctuating", "lte-like", "test-square", "wifi-adhoc-20"):
        sc = radio_scenarios.get(name)
        sim = build_simulator(_two_nodes(name), "local", profiles=ONE_BLOCK)
        for i in range(400):
            t = i * 0.173
            p = sc.at(t)
            want = (p.rate_mbit * 1e6 * G, p.delay_ms / 1000.0, p.loss)
            assert sim.link_state("a", "b", t) == pytest.approx(want, rel=1e-12), (name, t)
            assert sim.link_state("b", "a", t) == pytest.approx(want, rel=1e-12), (name, t)
        for p in sc.points:  # each point is in force from its own t_s on
            assert sim.link_state("a", "b", p.t_s)[0] == pytest.approx(p.rate_mbit * 1e6 * G)


def test_policy_view_keeps_the_configured_link_like_the_agents(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The agents are told the spec link's rate/delay/loss once (runner.build_configs) and never
    # learn of a scenario's changes: the simulator's policy view must be the same numbers.
    from orchestrator.runner import build_configs

    _scenarios(monkeypatch, tmp_path, **{"test-halve": HALVE})
    s = _two_nodes("test-halve", rate_mbit=100.0, delay_ms=1.0)
    sim = build_simulator(s, "ddi", profiles=ONE_BLOCK)
    sim.run()
    assert sim.now > 1.0  # past the change
    assert sim.link_state("a", "b")[:2] == pytest.approx((4e6 * G, 0.020))
    views = source_views(s, load_profiles(s, overrides=ONE_BLOCK))
    endpoints = {n: AgentEndpoint(node=n, control=f"tcp://{n}:7000") for n in ("a", "b")}
    configs = build_configs(s, "ddi", endpoints, views)
    world = sim.world("a")
    peer_cfg = configs["a"]["peers"]["b"]
    assert world.peers["b"].rate_bps == pytest.approx(peer_cfg["rate_bps"]) == pytest.approx(100e6 * G)
    assert world.peers["b"].delay_s == pytest.approx(peer_cfg["delay_s"])
    assert world.peers["b"].success == pytest.approx(1.0 - peer_cfg["loss"])
    agent_links = {(u, v): (rate, delay) for u, v, rate, delay in configs["a"]["links"]}
    assert set(world.links) == set(agent_links)
    for key, (rate, delay) in agent_links.items():
        assert world.links[key] == pytest.approx((rate, delay))


def test_constant_scenario_equals_the_plain_link(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _scenarios(monkeypatch, tmp_path, **{"test-flat": {"points": [{"t_s": 0, "rate_mbit": 20, "delay_ms": 2}]}})
    times, out = (0.004, 0.010, 0.006, 0.012), (120_000, 60_000, 30_000, 40)
    prof = {"tiny": synthetic_profile("tiny", times, out, input_bytes=200_000, result_bytes=40)}
    base: dict[str, Any] = {
        "nodes": [{"name": "a"}, {"name": "b", "speed": 2.0}, {"name": "c", "speed": 0.5}],
        "sources": [{"name": "s", "node": "a", "model": "tiny", "samples": 20, "interval_ms": 15},
                    {"name": "t", "node": "c", "model": "tiny", "samples": 20, "interval_ms": 20, "priority": 4}],
    }
    plain = spec(**base, full_mesh={"rate_mbit": 20, "delay_ms": 2})
    flat = spec(**base, full_mesh={"rate_mbit": 20, "delay_ms": 2, "scenario": "test-flat"})
    for policy in ("pa-mdi", "ms-mdi", "ar-mdi", "ddi"):
        a = simulate(plain, policy, profiles=prof).records
        b = simulate(flat, policy, profiles=prof).records
        assert [(r.task_id, r.placements, r.hops) for r in a] == [(r.task_id, r.placements, r.hops) for r in b]
        assert [r.done_s for r in b] == pytest.approx([r.done_s for r in a], rel=1e-12)


def test_colosseum_only_scenario_is_refused() -> None:
    s = _two_nodes("colosseum-1009")
    assert not radio_scenarios.get("colosseum-1009").shapeable
    with pytest.raises(SimulationError, match=r"link a-b: scenario 'colosseum-1009' has no link profile"):
        simulate(s, "local", profiles=ONE_BLOCK)
    with pytest.raises(SimulationError, match=r"link a-b: unknown radio scenario 'no-such-scenario'"):
        simulate(_two_nodes("no-such-scenario"), "local", profiles=ONE_BLOCK)
    # Straight into the engine: a schedule with no points names the link and the scenario too.
    view = source_view_from_profile("s", "a", ONE_BLOCK["tiny"])
    with pytest.raises(SimulationError, match=r"link a-b: scenario 'empty'"):
        Simulator([NodeConfig("a", 1.0), NodeConfig("b", 1.0)],
                  {("a", "b"): LinkConfig(1e6, schedule=LinkSchedule("empty", ()))},
                  [SimSource(view, 1, 0.0)], _ToB())


def test_schedule_drains_piecewise_and_delivers_in_order() -> None:
    # goodput_factor 1 keeps the arithmetic plain.
    loop = LinkSchedule("l", ((0.0, 2e6, 0.0, 0.0), (1.0, 1e6, 0.0, 0.0)), period_s=3.0, goodput_factor=1.0)
    assert loop.transmit(0.0, 1e6) == (0.5, 0.5)
    assert loop.transmit(0.5, 2e6)[0] == pytest.approx(2.0)  # 1e6 bits at 2e6, 1e6 at 1e6
    assert loop.transmit(2.5, 1e6)[0] == pytest.approx(3.25)  # 0.5e6 slow, then fast again
    assert loop.transmit(0.0, 9e6)[0] == pytest.approx(6.5)  # two whole periods (4e6 each) + 0.5 s
    assert loop.state(7.5) == (1e6, 0.0, 0.0) and loop.state(9.0) == (2e6, 0.0, 0.0)
    once = LinkSchedule("o", ((0.0, 2e6, 0.0, 0.0), (1.0, 1e6, 0.0, 0.0)), goodput_factor=1.0)
    assert once.state(1e6) == (1e6, 0.0, 0.0)
    assert once.transmit(0.0, 9e6)[0] == pytest.approx(8.0)
    # The delay drops from 2 s to 0.1 s mid-message: bits that left before the change still take
    # 2 s, so the message is complete at 1 + 2 = 3 s, not at 1.5 + 0.1.
    drop = LinkSchedule("d", ((0.0, 1e6, 2.0, 0.0), (1.0, 1e6, 0.1, 0.0)), goodput_factor=1.0)
    assert drop.transmit(0.5, 1e6) == pytest.approx((1.5, 3.0))
    assert drop.transmit(1.0, 1e6) == pytest.approx((2.0, 2.1))
    with pytest.raises(SimulationError, match="first point"):
        LinkSchedule("bad", ((0.5, 1e6, 0.0, 0.0),))


def test_queued_message_behind_a_slow_one_is_not_delivered_first() -> None:
    # FIFO delivery on one direction: a small message queued behind a big one whose early bits
    # took the old, longer delay arrives no earlier than the big one.
    drop = LinkSchedule("d", ((0.0, 1e6, 2.0, 0.0), (1.0, 1e6, 0.0, 0.0)), goodput_factor=1.0)
    view = source_view_from_profile("s", "a", ONE_BLOCK["tiny"])
    sim = Simulator([NodeConfig("a", 1.0), NodeConfig("b", 1.0)], {("a", "b"): LinkConfig(1e6, schedule=drop)},
                    [SimSource(view, 1, 0.0)], _ToB())
    first = sim._send_bytes("a", "b", 125_000)  # 1e6 bits: leaves 0..1 s, last bits at delay 2 s
    second = sim._send_bytes("a", "b", 125)  # leaves at 1.001 s with delay 0, waits behind the first
    assert first == pytest.approx(3.0)
    assert second == pytest.approx(3.0)
    assert sim._send_bytes("b", "a", 125) == pytest.approx(2.001)  # the other direction is free


# ---------------------------------------------------------------------------- runtime costs
BINARY_TIMES = (0.5, 0.25, 0.125, 1.0)
FOUR = {"tiny": synthetic_profile("tiny", BINARY_TIMES, (4000, 2000, 1000, 40), input_bytes=8000, result_bytes=40)}


def test_decision_cost_adds_one_cost_per_job() -> None:
    cost = 0.25
    s = spec(sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 1}])
    base = simulate(s, "pa-mdi", profiles=FOUR)
    held = simulate(s, "pa-mdi", profiles=FOUR, options=SimOptions(decision_cost_s=cost))
    (r0,), (r1,) = base.records, held.records
    assert r1.placements == r0.placements == (("a", 0, 1), ("a", 1, 2), ("a", 2, 3), ("a", 3, 4))
    partitions = 4
    assert r0.latency_s == pytest.approx(sum(BINARY_TIMES))
    # Every job ends with the worker's hold: three boundary decisions and the result's hand-off.
    assert r1.latency_s == pytest.approx(sum(BINARY_TIMES) + partitions * cost)
    # The worker is held: each job starts `cost` after the previous one ended.
    assert [n for n, _, _ in held.compute] == ["a"] * 4
    assert [t for _, t0, t1 in held.compute for t in (t0, t1)] == pytest.approx(
        [0.0, 0.5, 0.75, 1.0, 1.25, 1.375, 1.625, 2.625])
    assert held.busy_s["a"] == pytest.approx(sum(BINARY_TIMES))  # the hold is not compute


def test_decision_cost_under_local_is_charged_once_the_whole_model_is_one_job() -> None:
    # Local places the whole model at once: one job, one hold (the result's hand-off).
    s = spec(sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 1}])
    res = simulate(s, "local", profiles=FOUR, options=SimOptions(decision_cost_s=0.25))
    (r,) = res.records
    assert r.placements == (("a", 0, 4),)
    assert r.latency_s == pytest.approx(sum(BINARY_TIMES) + 0.25)


def test_decision_cost_holds_the_worker_for_other_tasks() -> None:
    # Two tasks at t = 0 on one node: the node is never idle, and every job of either task is
    # followed by a hold, so the last completion is 2 x model + 2 x 4 x cost.
    cost = 0.125
    s = spec(sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 2, "interval_ms": None}])
    res = simulate(s, "pa-mdi", profiles=FOUR, options=SimOptions(decision_cost_s=cost))
    assert all(r.status == COMPLETED for r in res.records)
    assert max(r.done_s for r in res.records) == pytest.approx(2 * sum(BINARY_TIMES) + 2 * 4 * cost)
    assert len(res.compute) == 8


def test_message_cost_is_added_once_per_hop() -> None:
    rate, delay, m = 20.0, 0.005, 0.0625
    prof = {"tiny": synthetic_profile("tiny", (1.0,), (40,), input_bytes=200_000, result_bytes=40)}
    s = _two_nodes(None, rate_mbit=rate, delay_ms=delay * 1000)
    g = rate * 1e6 * G
    (r0,) = simulate(s, "ddi", profiles=prof).records
    (r1,) = simulate(s, "ddi", profiles=prof, options=SimOptions(message_cost_s=m)).records
    assert r1.placements == (("b", 0, 1),) and r1.hops == 2
    assert r0.latency_s == pytest.approx(200_000 * 8 / g + delay + 1.0 + 320 / g + delay, rel=1e-9)
    assert r1.latency_s == pytest.approx(200_000 * 8 / g + delay + m + 1.0 + 320 / g + delay + m, rel=1e-9)


def test_zero_costs_change_nothing() -> None:
    times, out = (0.004, 0.010, 0.006, 0.012), (120_000, 60_000, 30_000, 40)
    prof = {"tiny": synthetic_profile("tiny", times, out, input_bytes=200_000, result_bytes=40)}
    s = spec(nodes=[{"name": "a"}, {"name": "b"}, {"name": "c", "speed": 2}], full_mesh={"rate_mbit": 50},
             sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 30, "interval_ms": 8}])
    for policy in ("pa-mdi", "ar-mdi"):
        a = simulate(s, policy, profiles=prof)
        b = simulate(s, policy, profiles=prof, options=SimOptions(beacon_period_s=0.1, decision_cost_s=0.0,
                                                                   message_cost_s=0.0))
        assert [(r.task_id, r.done_s, r.placements) for r in a.records] == [
            (r.task_id, r.done_s, r.placements) for r in b.records]
        assert a.compute == b.compute


def test_negative_costs_are_refused() -> None:
    s = spec(sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 1}])
    with pytest.raises(SimulationError, match="decision_cost_s"):
        simulate(s, "local", profiles=FOUR, options=SimOptions(decision_cost_s=-1.0))
    with pytest.raises(SimulationError, match="message_cost_s"):
        simulate(s, "local", profiles=FOUR, options=SimOptions(message_cost_s=-0.1))


class _ToB(PolicyDefaults):
    """Every partition on b while b looks alive, else on the holder."""

    name = "to-b"
    priority_queue = False
    handshake = False

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]:
        return (task.born_s,)

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]:
        source = world.sources[task.source]
        b = task.next_block
        e = partition_end(source, b)
        peer = world.peers.get("b")
        return (Placement("b" if peer is not None and peer.alive else world.here, b, e, 0.0),)

    def grant(self, requests: Sequence[OffloadRequest], world: WorldView) -> OffloadRequest | None:
        return min(requests, key=lambda r: (r.index, r.task.task_id), default=None)


def test_worker_failing_during_a_decision_loses_the_task_visibly() -> None:
    prof = synthetic_profile("tiny", (1.0, 1.0), (40, 40), input_bytes=8, result_bytes=8)
    view = source_view_from_profile("s", "a", prof)
    opts = SimOptions(beacon_period_s=0.1, decision_cost_s=0.5)
    sim = Simulator([NodeConfig("a", 1.0), NodeConfig("b", 1.0)], {("a", "b"): LinkConfig(1e12)},
                    [SimSource(view, 1, 0.0)], _ToB(), options=opts, failures=[FailureConfig("b", 1.2)])
    res = sim.run()
    (r,) = res.records
    # b computed block 0 by ~1.0 and failed at 1.2 while deciding; a notices after dead_after
    # (4 x 0.1 + 0.2 = 0.6 s) and restarts at 1.8; b looks dead, so a runs both partitions:
    # 1.8 + 1 + 0.5 (decision) + 1 + 0.5 (the result's hand-off).
    assert r.status == COMPLETED and r.retries == 1
    assert r.placements == (("b", 0, 1), ("a", 0, 0), ("a", 0, 1), ("a", 1, 2))
    assert r.done_s == pytest.approx(4.8, abs=1e-6)
    assert [c[0] for c in res.compute] == ["b", "a", "a"]


# ---------------------------------------------------------------------------- compute intervals
def test_compute_intervals_sum_to_busy_and_never_overlap() -> None:
    times, out = (0.004, 0.010, 0.006, 0.012), (120_000, 60_000, 30_000, 40)
    prof = {"tiny": synthetic_profile("tiny", times, out, input_bytes=200_000, result_bytes=40)}
    s = spec(nodes=[{"name": "a"}, {"name": "b", "speed": 2.0}, {"name": "c", "speed": 0.5}],
             full_mesh={"rate_mbit": 50, "delay_ms": 1},
             sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 40, "interval_ms": 10},
                      {"name": "t", "node": "c", "model": "tiny", "samples": 40, "interval_ms": 12, "priority": 4}])
    for policy in ("pa-mdi", "ms-mdi", "ar-mdi", "ddi", "local"):
        for opts in (None, SimOptions(decision_cost_s=0.001, message_cost_s=0.002)):
            res = simulate(s, policy, profiles=prof, options=opts)
            assert all(r.status == COMPLETED for r in res.records)
            ran = [p for r in res.records for p in r.placements if p[1] < p[2]]
            assert len(res.compute) == len(ran)
            for node in ("a", "b", "c"):
                mine = sorted((t0, t1) for n, t0, t1 in res.compute if n == node)
                assert sum(t1 - t0 for t0, t1 in mine) == pytest.approx(res.busy_s[node], rel=1e-9, abs=1e-12)
                assert all(0.0 <= t0 < t1 <= res.end_s for t0, t1 in mine)
                assert all(b0 >= a1 - 1e-12 for (_, a1), (b0, _) in itertools.pairwise(mine))
