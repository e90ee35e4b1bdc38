"""The agent builds the very WorldView the simulator builds for the same queue state.

One spec goes both ways: through the runner's ``build_configs`` into real agent ``RunState``s (real
executor thread, a block store held mid-compute) and through ``build_simulator`` into the engine.
The same tasks are queued on worker ``a`` in the same order; at the same instant inside the first
partition, the self view (queue, residual, per-weight queue, the task-by-task list), the view a
neighbour gets from ``a``'s beacon, the placements the policy ranks, and the steps both drivers
take through the one worker core's plan (``pamdi_node.worker``) must agree.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.backends.base import AgentEndpoint
from orchestrator.runner import build_configs
from orchestrator.simulator import build_simulator, source_views
from orchestrator.simulator.engine import Simulator
from orchestrator.simulator.state import _Task
from orchestrator.spec import parse_spec
from pamdi_node import wire
from pamdi_node.agent.config import parse_config
from pamdi_node.agent.executor import BlockStore
from pamdi_node.agent.flow import RunState
from pamdi_node.agent.handoff import rtc_request
from pamdi_node.agent.peers import PeerTable
from pamdi_node.agent.tasks import Task
from pamdi_node.policies import get_policy
from pamdi_node.policies.partition import partition_end
from pamdi_node.policies.types import PeerView, Placement, TaskView, WorldView, dead_after_s
from pamdi_node.telemetry import Telemetry
from pamdi_node.worker import Plan, Step, make_plan, next_step, offload_request
from tests.test_simulator_support import synthetic_profile

DELAY_S = 0.002
SPEC = parse_spec({
    "name": "parity", "seed": 3,
    "nodes": [{"name": "a", "speed": 0.5}, {"name": "b", "speed": 2.0}, {"name": "c"}],
    "full_mesh": {"rate_mbit": 20, "delay_ms": DELAY_S * 1000},
    "sources": [
        {"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 4},
        {"name": "nts", "node": "b", "model": "tiny", "priority": 1, "samples": 4},
    ],
    "accuracy": {"tiny": 0.8},
    "policy_params": {"aging": 0.5},
})
# Block times large against the float resolution of epoch seconds (the agent's clock, ~0.2 µs).
TINY = synthetic_profile("tiny", (0.04, 0.10, 0.06, 0.12), (120_000, 60_000, 30_000, 40), input_bytes=200_000)
PROFILES = {"ts": TINY, "nts": TINY}
TIME_ABS = 1e-6
# (source, born on the orchestrator clock, start, end), queued on a in this order; the first is in
# service when the views are taken (a task under way, then older/newer tasks of both weights).
QUEUED = [("ts", -0.010, 0, 2), ("nts", -0.050, 1, 3), ("ts", -0.002, 2, 4), ("nts", -0.001, 0, 4),
          ("nts", -0.030, 3, 4)]


class HeldStore(BlockStore):
    """Real executor, but the compute of the item in service lasts until the test releases it."""

    def __init__(self) -> None:
        super().__init__(0, "cpu")
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self, model: str, start: int, end: int, x: Any) -> Any:
        self.entered.set()
        self.release.wait(30)
        return x


def _agent(cfg: dict[str, Any], store: BlockStore) -> RunState:
    c = parse_config(cfg)
    return RunState(c, get_policy(c.policy, **c.policy_params), store, Telemetry(c.node),
                    send_peer=lambda node, frames: True, post=lambda event: None)


@pytest.fixture(params=["pa-mdi", "ms-mdi", "ddi"])
def both(request: pytest.FixtureRequest) -> Iterator[tuple[str, Simulator, dict[str, RunState], HeldStore]]:
    policy = request.param
    views = source_views(SPEC, PROFILES)
    eps = {n.name: AgentEndpoint(n.name, f"tcp://127.0.0.{i + 2}:7000") for i, n in enumerate(SPEC.nodes)}
    cfgs = build_configs(SPEC, policy, eps, views)
    store = HeldStore()
    agents = {n: _agent(cfgs[n], store if n == "a" else BlockStore(0, "cpu")) for n in ("a", "b", "c")}
    sim = build_simulator(SPEC, policy, profiles=PROFILES)
    try:
        yield policy, sim, agents, store
    finally:
        store.release.set()
        for rs in agents.values():
            rs.stop()


def _same_peer(agent: PeerView, sim: PeerView) -> None:
    assert agent.name == sim.name and agent.speed == sim.speed and agent.alive == sim.alive
    for f in ("queue_s", "residual_s", "rate_bps", "delay_s", "success", "link_backlog_s"):
        a, s = getattr(agent, f), getattr(sim, f)
        assert a == pytest.approx(s, rel=1e-9, abs=TIME_ABS), f
    assert [w for w, _ in agent.queue_by_weight] == [w for w, _ in sim.queue_by_weight]
    assert [x for _, x in agent.queue_by_weight] == pytest.approx([x for _, x in sim.queue_by_weight],
                                                                  abs=TIME_ABS)
    assert len(agent.waiting) == len(sim.waiting)
    for got, want in zip(sorted(agent.waiting), sorted(sim.waiting), strict=True):
        assert got == pytest.approx(want, abs=TIME_ABS)


def _same_world(agent: WorldView, sim: WorldView) -> None:
    assert agent.here == sim.here and agent.now_s == pytest.approx(sim.now_s, abs=TIME_ABS)
    assert set(agent.peers) == set(sim.peers)
    for name in sim.peers:
        _same_peer(agent.peers[name], sim.peers[name])
    assert dict(agent.sources) == dict(sim.sources)
    assert dict(agent.speeds) == dict(sim.speeds)
    assert {k: set(v) for k, v in agent.neighbours.items()} == {k: set(v) for k, v in sim.neighbours.items()}
    assert set(agent.links) == set(sim.links)
    for uv, (rate, delay) in sim.links.items():
        assert agent.links[uv] == pytest.approx((rate, delay), rel=1e-12)


def test_agent_views_equal_the_simulators(both: tuple[str, Simulator, dict[str, RunState], HeldStore]) -> None:
    policy, sim, agents, store = both
    a, b = agents["a"], agents["b"]
    # The simulator at t=0: every worker beacons its idle state (as its run starts).
    sim.now = 0.0
    for node in sim.nodes.values():
        sim._beacon(node)
    # The same tasks queued on a, in the same order; the first one starts at t=0 on both sides.
    for i, (src, born, start, end) in enumerate(QUEUED):
        view = sim.sources[src]
        sim._enqueue("a", _Task(f"{src}-{i}", view, born, "a"), start, end)
        a.enqueue(Task(f"{src}-{i}", src, view.node, view.model, view.priority, born, start, None), start, end)
        if i == 0:
            assert store.entered.wait(30), "the executor never picked the first item"
    t0 = a.executor.running_since
    assert t0 is not None
    for rs in agents.values():
        rs.clock_offset = t0  # local time t0 is the orchestrator's (and the simulator's) 0
    # The idle beacons of b and c (sent at 0) reach the others one delay later: what the
    # simulator's snapshots at 0 stand for.
    for sender in ("b", "c"):
        body = agents[sender].beacon_body(t0)
        for name, rs in agents.items():
            if name != sender:
                rs.peers.on_beacon(sender, body, t0 + DELAY_S)

    # Inside the first partition: 40% of it done.
    first = sim.nodes["a"].queue.running
    assert first is not None and first.after_s > 0 and first.task.id == "ts-0"
    elapsed = 0.4 * first.est_s
    sim.now = elapsed
    sim_world = sim.world("a")
    agent_world = a.world(t=t0 + elapsed)
    me = sim_world.peers["a"]
    assert me.residual_s == pytest.approx(0.6 * first.est_s)  # only the partition in service ...
    assert dict(me.queue_by_weight)[first.weight] >= first.after_s  # ... the rest of its model is queued work
    assert bool(me.waiting) == bool(sim.policy.uses_waiting)
    _same_world(agent_world, sim_world)

    # What b learns from a's beacon, one link delay later.
    sim._beacon(sim.nodes["a"])
    a_body = a.beacon_body(t0 + elapsed)
    b.peers.on_beacon("a", a_body, t0 + elapsed + DELAY_S)
    sim.now = elapsed + DELAY_S + 1e-4
    _same_world(b.world(t=t0 + sim.now), sim.world("b"))

    # And the policy decides the same on both views: a new TS task at a, a new NTS task at b.
    sim.now = elapsed
    for here, src, rs in (("a", "ts", a), ("b", "nts", b)):
        sim.now = elapsed + (DELAY_S + 1e-4 if here == "b" else 0.0)
        tv = TaskView(f"new-{src}", src, 0, sim.now - 0.001, here)
        want = sim.policy.rank(tv, sim.world(here))
        got = rs.policy.rank(tv, rs.world(t=t0 + sim.now))
        assert [(p.node, p.start, p.end) for p in got] == [(p.node, p.start, p.end) for p in want], policy
        assert [p.index for p in got] == pytest.approx([p.index for p in want], rel=1e-6)
        # Both drivers then walk the one worker core's plan the same way: the steps the simulator
        # takes (no refusals) are the agent's, handshake and fallback included.
        n = sim.sources[src].num_blocks
        end = partition_end(sim.sources[src], 0)
        sim_plan = make_plan(sim.policy, tv, sim.world(here), n, end, strict=True)
        agent_plan = make_plan(rs.policy, tv, rs.world(t=t0 + sim.now), n, end)
        assert (sim_plan.handshake, sim_plan.fallback_index) == pytest.approx(
            (agent_plan.handshake, agent_plan.fallback_index), rel=1e-6)
        sim_steps, agent_steps = _steps(sim_plan), _steps(agent_plan)
        assert [s[:4] for s in agent_steps] == [s[:4] for s in sim_steps], policy


def _steps(plan: Plan) -> list[Step]:
    """Every step of a plan whose offers are all refused, down to the fallback."""
    steps = []
    while plan.candidates:
        steps.append(next_step(plan))
    return [*steps, next_step(plan)]


def test_liveness_rule_is_shared() -> None:
    # The agent's default and the simulator's default are the one rule in policies.types.
    period = SPEC.beacon_period_ms / 1000.0
    limit = dead_after_s(period)
    assert math.isclose(limit, 4 * period + 0.2)
    views = source_views(SPEC, PROFILES)
    eps = {n.name: AgentEndpoint(n.name, f"tcp://127.0.0.{i + 2}:7000") for i, n in enumerate(SPEC.nodes)}
    cfg = parse_config(build_configs(SPEC, "local", eps, views)["a"])
    assert cfg.dead_after == limit
    sim = build_simulator(SPEC, "local", profiles=PROFILES)
    assert sim.dead_after_s == limit
    # A neighbour silent for just under / over the rule is alive / dead on both sides (the beacon is
    # sent at 0 and received one delay later).
    sim.now = 0.0
    for node in sim.nodes.values():
        sim._beacon(node)
    # The beacon reaches a one delay (and its few bytes' transmission) later, in both.
    heard = sim.nodes["b"].snap_arrivals["a"][-1]
    assert heard == pytest.approx(DELAY_S, abs=1e-4)
    peers = PeerTable(cfg, 0.0)
    peers.on_beacon("b", {"speed": 2.0, "queue_s": 0.0, "seq": 1}, heard)
    for gap, alive in ((limit - 1e-6, True), (limit + 1e-6, False)):
        sim.now = heard + gap
        assert sim.world("a").peers["b"].alive is alive
        assert peers.alive("b", heard + gap) is alive


@pytest.mark.parametrize("fallback, answer", [(1e-9, wire.DENY), (1e9, wire.CTC)])
def test_an_rtc_reaches_the_receiver_as_the_simulator_hands_it_over(fallback: float, answer: str) -> None:
    """The sender's offer goes over the wire and the receiving agent rebuilds the very request the
    simulator's receiver is handed (``worker.offload_request``), the sender's fallback included: a
    PA-MDI receiver that re-checks denies an offer its sender does better keeping (here a fallback
    no receiver can beat) and clears one it cannot (a fallback nobody misses)."""
    views = source_views(SPEC, PROFILES)
    eps = {n.name: AgentEndpoint(n.name, f"tcp://127.0.0.{i + 2}:7000") for i, n in enumerate(SPEC.nodes)}
    cfgs = build_configs(SPEC, "pa-mdi", eps, views)
    sent: list[tuple[str, str, list[Any]]] = []
    agents = {n: _agent(cfgs[n], BlockStore(0, "cpu")) for n in ("b", "c")}
    for n, rs in agents.items():
        rs.send_peer = lambda to, frames, n=n: sent.append((n, to, frames)) or True  # type: ignore[method-assign]
    try:
        b, c = agents["b"], agents["c"]
        now = time.time()
        for rs in agents.values():
            rs.clock_offset = now
            rs.peers.on_beacon("c" if rs is b else "b", {"speed": 1.0, "queue_s": 0.0, "seq": 1}, now)
        tv = TaskView("nts-7", "nts", 1, -0.004, "b")
        def plan() -> Plan:
            return Plan(tv, [Placement("c", 1, 3, 0.05)], True, fallback, views["nts"].num_blocks, 3, -0.001)

        step = next_step(plan())
        assert step.action == "offer"
        b.step(Task("nts-7", "nts", "b", "tiny", 1.0, -0.004, 1, None), plan(), now)
        (frm, to, frames), = sent
        msg = wire.decode([bytes(f) for f in frames])
        assert (frm, to, msg.type) == ("b", "c", wire.RTC)
        got = rtc_request(msg.body, "b", "c")
        want = offload_request(plan(), step, "b", views["nts"].priority)
        assert got == dataclasses.replace(want, fallback_index=got.fallback_index)
        assert got.fallback_index == pytest.approx(want.fallback_index, rel=1e-12)
        assert got.scored_s == want.scored_s == -0.001  # the instant the fallback was scored travels too
        sent.clear()
        c.on_rtc("b", msg)
        c.grant()
        (frm, to, frames), = sent
        reply = wire.decode([bytes(f) for f in frames])
        assert (frm, to, reply.type) == ("c", "b", answer)
        if answer == wire.DENY:
            assert reply.body["reason"] == "the sender does better keeping it"
    finally:
        for rs in agents.values():
            rs.stop()
