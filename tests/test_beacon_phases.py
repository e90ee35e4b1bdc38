"""Beacon phases: one draw per seed that the agents and the simulator share, and the predictions that
average over other draws (``orchestrator.predict.predict_ensemble``)."""

from __future__ import annotations

import statistics
from types import SimpleNamespace

import pytest

from orchestrator.hostprofiles import run_profiles
from orchestrator.metrics import summarize_run
from orchestrator.predict import AGENT_DEFAULTS, RuntimeCosts, predict_ensemble, shorten
from orchestrator.simulator import SimOptions, build_simulator, simulate
from orchestrator.spec import load_spec
from orchestrator.specs import resolve_spec
from pamdi_node.agent.flow import RunState
from pamdi_node.arrivals import beacon_phases

NODES = ["a", "b", "c", "d", "e"]


def _next(anchor: float | None, period: float, now: float) -> float:
    # RunState.next_beacon reads only the anchor and the period: no agent needed to test the grid.
    return RunState.next_beacon(SimpleNamespace(beacon_anchor=anchor, cfg=SimpleNamespace(beacon_period_s=period)),
                                now)  # type: ignore[arg-type]


def test_phases_are_per_node_in_the_period_and_differ_between_replicas() -> None:
    p0 = beacon_phases(7, NODES, 0.1)
    assert list(p0) == NODES and all(0.0 <= v < 0.1 for v in p0.values())
    assert beacon_phases(7, NODES, 0.1) == p0  # the orchestrator and the simulator draw the same
    assert len(set(p0.values())) == len(NODES)
    assert beacon_phases(7, NODES, 0.1, replica=1) != p0 and beacon_phases(8, NODES, 0.1) != p0
    stretched = beacon_phases(7, NODES, 0.6)  # a run stretched 6x: the same draw, 6x the time
    assert all(stretched[n] == pytest.approx(6 * p0[n]) for n in NODES)


def test_beacons_keep_to_their_grid_however_late_the_loop_runs() -> None:
    anchor, period = 100.0, 0.25
    assert _next(anchor, period, 99.9) == anchor  # started before its phase: first beacon at it
    for i in range(1000):  # each beacon sent up to 40% of a period late
        late = (i * 0.037) % 0.1
        assert _next(anchor, period, anchor + i * period + late) == pytest.approx(anchor + (i + 1) * period), i
    assert _next(anchor, period, anchor + 10.6) == pytest.approx(anchor + 10.75)  # a restarted agent
    assert _next(None, period, 5.0) == 5.25  # before START: a period on


def test_the_simulator_beacons_at_the_agents_phases() -> None:
    spec = load_spec(resolve_spec("small"))
    period = spec.beacon_period_ms / 1000.0
    for replica in (0, 3):
        sim = build_simulator(spec, "pa-mdi", options=SimOptions(beacon_period_s=period, replica=replica))
        sim.run()
        phases = beacon_phases(spec.seed, [n.name for n in spec.nodes], period, replica)
        for name, node in sim.nodes.items():
            # snap_times[0] is the seeded idle view at 0; then one beacon per period from the phase.
            beacons = node.snap_times[1:4]
            assert beacons == pytest.approx([phases[name] + i * period for i in range(3)]), (replica, name)


def test_an_ensemble_is_the_mean_and_spread_of_its_draws() -> None:
    spec = shorten(load_spec(resolve_spec("paper-5node-resnet56-loaded")), 1.0)
    profiles, _ = run_profiles(spec, "profile")
    costs = {"ms-mdi": RuntimeCosts(8e-5, 1.6e-4)}
    ens = predict_ensemble(spec, ["ms-mdi"], profiles, costs, replicas=4)
    prios = {s.name: s.priority for s in spec.sources}
    draws: dict[str, list[float]] = {}
    for replica in range(4):  # each draw simulated on its own, summarised independently
        opts = SimOptions(beacon_period_s=spec.beacon_period_ms / 1000.0, decision_cost_s=8e-5,
                          message_cost_s=1.6e-4, rtc_window_s=AGENT_DEFAULTS.grant_window_s,
                          rtc_timeout_s=AGENT_DEFAULTS.rtc_timeout_s, replica=replica)
        res = simulate(spec, "ms-mdi", profiles=dict(profiles), options=opts)
        for src, st in summarize_run("ms-mdi", res.records, prios)["sources"].items():
            draws.setdefault(src, []).append(st["mean_s"])
    for src, means in draws.items():
        p = ens[("ms-mdi", src)]
        assert p.replicas == 4 and p.first_s == means[0]
        assert p.mean_s == pytest.approx(statistics.fmean(means))
        assert p.sd_s == pytest.approx(statistics.stdev(means))
    assert any(len(set(m)) > 1 for m in draws.values())  # near saturation the phases move the mean
    one = predict_ensemble(spec, ["ms-mdi"], profiles, costs, replicas=1)
    assert all(p.sd_s is None and p.mean_s == p.first_s for p in one.values())
    with pytest.raises(ValueError, match="replicas"):
        predict_ensemble(spec, ["ms-mdi"], profiles, costs, replicas=0)


def test_simulate_replicas_gives_each_source_the_mean_and_sd_of_its_draws() -> None:
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["simulate", "paper-5node-resnet56-loaded", "--policy", "ms-mdi",
                                      "--replicas", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    spec = load_spec(resolve_spec("paper-5node-resnet56-loaded"))
    prios = {s.name: s.priority for s in spec.sources}
    means: dict[str, list[float]] = {}
    for replica in range(3):
        res = simulate(spec, "ms-mdi", options=SimOptions(beacon_period_s=spec.beacon_period_ms / 1000.0,
                                                          replica=replica))
        for src, st in summarize_run("ms-mdi", res.records, prios)["sources"].items():
            means.setdefault(src, []).append(st["mean_s"])
    for src, st in summary["runs"][0]["sources"].items():
        assert st["mean_s"] == pytest.approx(means[src][0])  # draw 0: the plain simulation
        assert st["replicas"]["n"] == 3
        assert st["replicas"]["mean_s"] == pytest.approx(statistics.fmean(means[src]))
        assert st["replicas"]["sd_s"] == pytest.approx(statistics.stdev(means[src]))
    table = CliRunner(env={"COLUMNS": "140"}).invoke(app, ["simulate", "small", "--policy", "pa-mdi",
                                                            "--replicas", "2"])
    assert table.exit_code == 0 and "mean of 2 ± sd" in table.output, table.output
