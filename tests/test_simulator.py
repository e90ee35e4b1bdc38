"""The simulator against closed-form cases, failure handling, determinism."""

from __future__ import annotations

import pytest

from orchestrator.metrics import COMPLETED, summarize_run
from orchestrator.simulator import SimOptions, simulate
from pamdi_node.policies.types import LINK_GOODPUT_FACTOR
from tests.test_simulator_support import spec, synthetic_profile

TIMES = (0.004, 0.010, 0.006, 0.012)
OUT = (120_000, 60_000, 30_000, 40)
PROFILE = {"tiny": synthetic_profile("tiny", TIMES, OUT, input_bytes=200_000, result_bytes=40)}


def test_one_source_one_node_equals_profile_sum_scaled_by_speed() -> None:
    s = spec(nodes=[{"name": "a", "speed": 0.5}], sources=[
        {"name": "s", "node": "a", "model": "tiny", "samples": 5, "interval_ms": 1000}])
    for policy in ("local", "pa-mdi", "ms-mdi", "ar-mdi", "ddi"):
        res = simulate(s, policy, profiles=PROFILE)
        assert len(res.records) == 5
        for r in res.records:
            assert r.status == COMPLETED
            assert r.latency_s == pytest.approx(sum(TIMES) / 0.5, rel=1e-9)


def test_two_node_chain_compute_plus_transfer_plus_delay() -> None:
    # AR-MDI on two equal nodes: the cut minimises the pipeline's slowest stage (a's compute, the
    # a->b transfer, b's compute); the latency is then compute + bytes/(0.956 rate) + delay + result.
    rate, delay = 20.0, 0.005
    s = spec(nodes=[{"name": "a"}, {"name": "b"}], links=[{"a": "a", "b": "b", "rate_mbit": rate, "delay_ms": 5}],
             sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 3, "interval_ms": 2000}])
    res = simulate(s, "ar-mdi", profiles=PROFILE)
    goodput = rate * 1e6 * LINK_GOODPUT_FACTOR
    ins = (200_000, *OUT[:-1])

    def bottleneck(cut: int) -> float:
        if cut == 4:
            return sum(TIMES)
        return max(sum(TIMES[:cut]), ins[cut] * 8 / goodput, sum(TIMES[cut:]), OUT[-1] * 8 / goodput)

    cut = min(range(5), key=bottleneck)
    assert 0 < cut < 4  # the instance is built so that splitting pays (cut 3: 30 KB at the cut)
    expected = sum(TIMES) + ins[cut] * 8 / goodput + delay + OUT[-1] * 8 / goodput + delay
    for r in res.records:
        assert r.placements == (("a", 0, cut), ("b", cut, 4))
        assert r.latency_s == pytest.approx(expected, rel=1e-9)


def test_saturated_queue_grows_when_arrivals_exceed_service() -> None:
    service = sum(TIMES)
    s_over = spec(sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 60,
                            "interval_ms": service * 1000 / 1.5}])
    s_under = spec(sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 60,
                             "interval_ms": service * 1000 / 0.8}])
    over = [r.latency_s for r in simulate(s_over, "local", profiles=PROFILE).records]
    under = [r.latency_s for r in simulate(s_under, "local", profiles=PROFILE).records]
    assert all(x == pytest.approx(service) for x in under)
    # overload: task i waits i*(service - interval); strictly growing and matching the closed form
    gap = service / 1.5
    for i, x in enumerate(over):
        assert x == pytest.approx(service + i * (service - gap), rel=1e-9)


def test_failure_restarts_or_fails_with_reason_nothing_lost() -> None:
    nodes = [{"name": n} for n in "abc"]
    base = dict(nodes=nodes, full_mesh={"rate_mbit": 50},
                sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 40, "interval_ms": 10}],
                failures=[{"node": "b", "at_s": 0.1}], beacon_period_ms=20)
    s = spec(**base)
    for policy in ("pa-mdi", "ms-mdi", "ar-mdi", "ddi"):
        res = simulate(s, policy, profiles=PROFILE)
        assert len(res.records) == 40
        assert all(r.status == COMPLETED for r in res.records), policy
        # nothing runs on b after its failure has been noticed
        late = [r for r in res.records if r.born_s > 0.1 + 0.1]
        assert all(all(p[0] != "b" for p in r.placements) for r in late), policy
    # the source itself dies: its later tasks fail with a reason, none vanish
    s2 = spec(**{**base, "failures": [{"node": "a", "at_s": 0.2}]})
    res = simulate(s2, "pa-mdi", profiles=PROFILE)
    assert len(res.records) == 40
    failed = [r for r in res.records if r.status != COMPLETED]
    assert failed and all(r.reason for r in failed)
    summary = summarize_run("pa-mdi", res.records, {"s": 1.0})
    assert summary["sources"]["s"]["failed"] == len(failed)
    assert summary["sources"]["s"]["completed"] + len(failed) == 40


def test_deterministic_for_a_seed() -> None:
    s = spec(nodes=[{"name": n} for n in "abcd"], full_mesh={"rate_mbit": 20, "delay_ms": 2},
             sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 50, "interval_ms": 8,
                       "arrival": "poisson", "priority": 5},
                      {"name": "t", "node": "c", "model": "tiny", "samples": 50, "interval_ms": 8}])
    a = simulate(s, "pa-mdi", profiles=PROFILE, seed=3)
    b = simulate(s, "pa-mdi", profiles=PROFILE, seed=3)
    assert [(r.task_id, r.done_s, r.placements) for r in a.records] == [
        (r.task_id, r.done_s, r.placements) for r in b.records]
    assert a.events == b.events
    opts = SimOptions(beacon_period_s=0.05)
    assert simulate(s, "pa-mdi", profiles=PROFILE, seed=3, options=opts).events != a.events
