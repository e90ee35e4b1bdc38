"""Link jitter: the spec's refusals, the agents' delay line (released-time distribution, FIFO order,
seeded draws) and the simulator's latency spread, each against an independent computation."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from orchestrator.simulator import simulate
from orchestrator.spec import SpecError, parse_spec
from pamdi_node.agent.delayline import DelayLine
from pamdi_node.jitter import link_seed
from pamdi_node.policies.types import LINK_GOODPUT_FACTOR
from tests.test_simulator_support import spec, synthetic_profile

D, J = 0.020, 0.010  # delay line: 20 ms ± 10 ms


def _two_nodes(link: dict[str, object]) -> dict[str, object]:
    return {"name": "j", "nodes": [{"name": "a"}, {"name": "b"}], "links": [{"a": "a", "b": "b", **link}],
            "sources": [{"name": "s", "node": "a", "model": "tiny", "samples": 1}]}


@pytest.mark.parametrize(("link", "needle"), [
    ({"rate_mbit": 10, "delay_ms": 2, "jitter_ms": 5}, "links[0]: link a-b: jitter_ms 5 exceeds delay_ms 2"),
    ({"rate_mbit": 10, "jitter_ms": 1}, "link a-b: jitter_ms 1 exceeds delay_ms 0"),
    ({"rate_mbit": 10, "delay_ms": 9, "jitter_ms": 1, "scenario": "wifi-fluctuating"},
     "link a-b: jitter_ms 1 on scenario link 'wifi-fluctuating'"),
    ({"rate_mbit": 10, "delay_ms": 9, "jitter_ms": -1}, "links[0].jitter_ms: Input should be greater than or equal"),
])
def test_spec_refuses_impossible_jitter_in_one_line_naming_the_link(link: dict[str, object], needle: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_two_nodes(link))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_spec_accepts_jitter_within_delay() -> None:
    (lk,) = parse_spec(_two_nodes({"rate_mbit": 10, "delay_ms": 8, "jitter_ms": 8})).resolved_links()
    assert (lk.delay_ms, lk.jitter_ms) == (8, 8)
    assert parse_spec(_two_nodes({"rate_mbit": 10})).resolved_links()[0].jitter_ms == 0


def _feed(line: DelayLine, gap_s: float, n: int) -> list[tuple[float, float]]:
    """Hold n messages from peer p arriving every ``gap_s``; release them as a clock walks past
    their due times; (arrival, release) in the order the line let them go."""
    run = object()
    arrivals = [100.0 + i * gap_s for i in range(n)]
    for i, t in enumerate(arrivals):
        line.hold_from("p", t, run, i)
    out: list[tuple[float, float]] = []
    while line.next_due() < math.inf:
        now = line.next_due()
        out.extend((arrivals[msg], due) for _, msg, due in line.release(now, run))
    return out


def test_delay_line_draws_uniform_delay_plus_minus_jitter() -> None:
    line = DelayLine()
    line.set_link("p", D, J, seed=7, here="q")
    # 50 ms apart: more than 2 J, so no message ever waits for the one ahead (pure draws).
    held = [due - t for t, due in _feed(line, 0.050, 6000)]
    assert min(held) >= D - J - 1e-12 and max(held) <= D + J + 1e-12
    sd = J / math.sqrt(3)  # of U(D - J, D + J)
    assert statistics.fmean(held) == pytest.approx(D, abs=4 * sd / math.sqrt(len(held)))
    assert statistics.pstdev(held) == pytest.approx(sd, rel=0.05)
    q1, q2, q3 = statistics.quantiles(held, n=4)
    assert (q1, q2, q3) == pytest.approx((D - J / 2, D, D + J / 2), abs=0.05 * J)  # flat, not bell-shaped


def test_delay_line_keeps_fifo_and_repeats_the_seeded_draws() -> None:
    line = DelayLine()
    line.set_link("p", D, J, seed=7, here="q")
    gap = 0.002  # far closer than 2 J: many messages must wait for the one ahead
    out = _feed(line, gap, 3000)
    assert [t for t, _ in out] == sorted(t for t, _ in out)  # released in the order they arrived
    released = [due for _, due in out]
    assert all(b >= a for a, b in itertools.pairwise(released))
    # Independently: the same seeded uniform draws through the FIFO recursion due_i = max(due_{i-1}, t_i + D + u_i).
    rng, last, expect = random.Random(link_seed(7, "p", "q")), -math.inf, []
    for t, _ in out:
        last = max(last, t + D + rng.uniform(-J, J))
        expect.append(last)
    assert released == pytest.approx(expect, abs=1e-12)
    waits = [due - t for t, due in out]
    assert statistics.fmean(waits) > D + J / 4  # holding back for the message ahead raises the mean
    assert min(waits) >= D - J - 1e-12
    # Another seed or another direction: other draws.
    other = DelayLine()
    other.set_link("p", D, J, seed=8, here="q")
    assert [due for _, due in _feed(other, gap, 50)] != released[:50]


def test_delay_line_without_jitter_holds_exactly_the_delay_and_clear_forgets_links() -> None:
    line = DelayLine()
    line.set_link("p", D, 0.0, seed=1, here="q")
    assert all(due - t == pytest.approx(D, abs=1e-12) for t, due in _feed(line, 0.001, 100))
    line.clear()
    assert not line.holds("p")


TIMES = (0.004, 0.010, 0.006, 0.012)
OUT = (120_000, 60_000, 30_000, 40)
PROFILE = {"tiny": synthetic_profile("tiny", TIMES, OUT, input_bytes=200_000, result_bytes=40)}


@pytest.mark.parametrize("jitter_ms", [0.0, 2.0, 5.0])
def test_simulated_latency_spreads_as_two_uniform_hops(jitter_ms: float) -> None:
    # AR-MDI's chain a -> b: the activation crosses a->b and the result b->a, each waiting
    # 5 ms ± jitter. Tasks 200 ms apart (and beacons a minute apart) never queue behind each other,
    # so each latency is the jitter-free closed form plus two independent U(-J, J) draws.
    rate, delay = 20.0, 0.005
    s = spec(nodes=[{"name": "a"}, {"name": "b"}],
             links=[{"a": "a", "b": "b", "rate_mbit": rate, "delay_ms": 5, "jitter_ms": jitter_ms}],
             sources=[{"name": "s", "node": "a", "model": "tiny", "samples": 600, "interval_ms": 200}],
             beacon_period_ms=60_000)
    res = simulate(s, "ar-mdi", profiles=PROFILE)
    goodput = rate * 1e6 * LINK_GOODPUT_FACTOR
    assert {r.placements for r in res.records} == {(("a", 0, 3), ("b", 3, 4))}
    base = sum(TIMES) + OUT[2] * 8 / goodput + delay + OUT[-1] * 8 / goodput + delay
    extra = [r.latency_s - base for r in res.records]
    j = jitter_ms / 1000.0
    assert min(extra) >= -2 * j - 1e-9 and max(extra) <= 2 * j + 1e-9
    sd = math.sqrt(2 / 3) * j  # sum of two U(-J, J)
    assert statistics.fmean(extra) == pytest.approx(0.0, abs=4 * sd / math.sqrt(len(extra)) + 1e-9)
    assert statistics.pstdev(extra) == pytest.approx(sd, rel=0.08, abs=1e-9)
    assert [r.latency_s for r in simulate(s, "ar-mdi", profiles=PROFILE).records] == [r.latency_s for r in res.records]


def test_netem_options_carry_jitter_and_the_ordering_rate() -> None:
    # Where netem exists: pyroute2's netem encoder (the netns shaper) and tc's arguments (the node
    # image) both get delay D, jitter J (no distribution table: uniform) and the in-order rate.
    from pyroute2.netlink.rtnl.tcmsg import sched_netem
    from pyroute2.netlink.rtnl.tcmsg.common import time2tick

    from node_image.pamdi_node_entry import netem_args
    from orchestrator.netem.tc import NETEM_ORDER_RATE, netem_params

    opts = sched_netem.get_parameters(netem_params(40.0, 7.5, 0.01))
    assert (opts["delay"], opts["jitter"]) == (time2tick(40_000), time2tick(7_500))  # µs, in the kernel's ticks
    (rate,) = [v for k, v in opts["attrs"] if k == "TCA_NETEM_RATE"]
    assert rate["rate"] == 32e9 / 8 < 2**32  # bytes/s, in netem's 32-bit field
    assert "jitter" not in netem_params(40.0, 0.0, 0.0) and "rate" not in netem_params(40.0, 0.0, 0.0)
    args = netem_args(40.0, 7.5, 0.01)
    assert args[:6] == ["netem", "delay", "40.0ms", "7.5ms", "rate", NETEM_ORDER_RATE] and "distribution" not in args
    assert netem_args(40.0, 0.0, 0.0)[:4] == ["netem", "delay", "40.0ms", "loss"]
