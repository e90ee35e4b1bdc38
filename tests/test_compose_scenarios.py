"""Radio scenarios in compose projects: what is rendered into the node configs, and how the node
image's follower reads it (the entry script's own functions, against ``Scenario.at``)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import radio_scenarios
from orchestrator.backends.static import StaticBackend
from orchestrator.compose import render_compose
from orchestrator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
LOOPED = {"name": "pamdi-test-loop", "description": "three steps, looping every 3 s", "loop": True,
          "period_s": 3.0, "points": [{"t_s": 0, "rate_mbit": 12, "delay_ms": 2.0},
                                      {"t_s": 1, "rate_mbit": 4, "delay_ms": 5.0, "loss": 0.01},
                                      {"t_s": 2.5, "rate_mbit": 8}]}


def entry_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pamdi_node_entry", ROOT / "node_image" / "pamdi_node_entry.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def user_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user scenario (only on this host, as a user's imported profile would be)."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "loop.yaml").write_text(yaml.safe_dump(LOOPED))
    monkeypatch.setenv("PAMDI_SCENARIOS_DIR", str(folder))
    return str(LOOPED["name"])


def _spec(scenario: str) -> dict:
    return {"name": "sc3", "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}], "full_mesh": {"rate_mbit": 40},
            "links": [{"a": "a", "b": "c", "rate_mbit": 10, "scenario": scenario}],
            "sources": [{"name": "s", "node": "a", "model": "resnet56", "samples": 4, "interval_ms": 10}]}


@pytest.mark.parametrize("k", [1.0, 2.5])
def test_scenario_points_rendered_stretched(tmp_path: Path, user_scenario: str, k: float) -> None:
    out = tmp_path / "proj"
    render_compose(parse_spec(_spec(user_scenario)), out, image="img:x", taken_subnets=[], device_time="profile",
                   time_stretch=k)
    sc = radio_scenarios.get(user_scenario)
    job = json.loads((out / "pamdi/run.json").read_text())
    assert job["scenario_clock"] == "/traces/scenario_clock.json" and job["time_stretch"] == k
    for node, peer in (("a", "c"), ("c", "a")):  # both ends follow the link
        cfg = json.loads((out / f"pamdi/nodes/{node}.json").read_text())
        assert cfg["scenario_log"] == f"/traces/scenarios/{node}.jsonl"
        link = next(lk for lk in cfg["links"] if lk["peer"] == peer)
        sched = link["schedule"]
        assert sched["scenario"] == user_scenario and sched["period_s"] == pytest.approx(3.0 * k)
        assert [x for p in sched["points"] for x in (p["t_s"], p["rate_mbit"], p["delay_ms"], p["loss"])] == (
            pytest.approx([x for p in sc.points for x in (p.t_s * k, p.rate_mbit / k, p.delay_ms * k, p.loss)]))
        # Shaped at start with the first point (stretched), not the spec link's own 10 Mbit/s.
        assert (link["rate_mbit"], link["delay_ms"]) == pytest.approx((12 / k, 2.0 * k))
        other = next(lk for lk in cfg["links"] if lk["peer"] == "b")
        assert "schedule" not in other and other["rate_mbit"] == pytest.approx(40 / k)
    b = json.loads((out / "pamdi/nodes/b.json").read_text())
    assert "scenario_clock" not in b and not any("schedule" in lk for lk in b["links"])


def test_no_scenario_no_clock(tmp_path: Path) -> None:
    spec = _spec("x")
    spec["links"][0].pop("scenario")
    render_compose(parse_spec(spec), tmp_path, image="img:x", taken_subnets=[], device_time="quota")
    assert json.loads((tmp_path / "pamdi/run.json").read_text())["scenario_clock"] is None


def test_colosseum_only_scenario_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no local link profile"):
        render_compose(parse_spec(_spec("colosseum-1009")), tmp_path, image="img:x", taken_subnets=[])


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_follower_steps_match_the_scenario(user_scenario: str, k: float) -> None:
    """The follower's point at every (stretched) time is the scenario's at the nominal time, loops
    included, and its next wake-up is exactly the next step."""
    from orchestrator.compose_scenarios import render_schedule

    entry = entry_script()
    sc = radio_scenarios.get(user_scenario)
    sched = render_schedule(sc, k)
    for i in range(200):
        t = i * 0.037  # nominal seconds, over several periods
        p = sched["points"][entry.point_at(sched, t * k)]
        assert p["rate_mbit"] == pytest.approx(sc.at(t).rate_mbit / k)
    steps = [t * k for t, _ in sc.changes(9.0)][1:]  # unrolled loops: every step after t = 0
    t, seen = 0.0, []
    while (t := entry.next_step(sched, t)) <= 9.0 * k:
        seen.append(t)
    assert seen == pytest.approx(steps)
    once = render_schedule(radio_scenarios.get("wifi-adhoc-20"), k)  # one point: never a step
    assert entry.next_step(once, 0.0) == float("inf")


def test_clock_started_by_the_coordinator_backend(tmp_path: Path) -> None:
    """StaticBackend.up starts the clock; a follower ignores a clock older than its container."""
    clock = tmp_path / "scenario_clock.json"
    entry = entry_script()
    before = time.time()
    backend = StaticBackend({"a": {"control": "tcp://x:1"}}, scenario_clock=str(clock))
    backend.up(parse_spec({"name": "one", "nodes": [{"name": "a"}], "sources": [
        {"name": "s", "node": "a", "model": "resnet56", "samples": 1}]}), None)  # type: ignore[arg-type]
    t0 = json.loads(clock.read_text())["t0_unix"]
    assert before <= t0 <= time.time()
    assert entry._read_clock(str(clock), before) == t0
    assert entry._read_clock(str(clock), t0 + 1.0) is None  # a previous run's file
    assert entry._read_clock(str(tmp_path / "missing.json"), 0.0) is None


def test_failing_change_is_logged_not_fatal(tmp_path: Path) -> None:
    """A tc change that fails (here: no interface on the link's subnet) is logged and the follower
    goes on until the agent ends, then ends too."""
    import subprocess

    entry = entry_script()
    # A subnet no interface of this host has (checked: a match would shape a real interface).
    subnet = next(net for net in ("198.51.100.0/30", "203.0.113.0/30", "100.127.255.252/30")
                  if not _has_interface(entry, net))
    agent = subprocess.Popen(["sleep", "1.2"])  # stands for the agent: the follower watches its pid
    log_path = tmp_path / "scenarios" / "n.jsonl"
    started = time.time()
    (tmp_path / "clock.json").write_text(json.dumps({"t0_unix": time.time()}))
    sched = {"scenario": "x", "period_s": 0.0, "points": [{"t_s": 0.0, "rate_mbit": 5.0},
                                                          {"t_s": 0.2, "rate_mbit": 1.0}]}
    config = {"node": "n", "links": [{"peer": "m", "subnet": subnet, "rate_mbit": 5.0, "schedule": sched}],
              "scenario_clock": str(tmp_path / "clock.json"), "scenario_log": str(log_path), "scenario_tick_s": 0.02}
    try:
        entry.follow(config, agent.pid, started - 1.0)
    finally:
        agent.wait()
    assert time.time() - started < 3.0  # it ended with the "agent"
    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["event"] for r in rows] == ["clock", "change"]
    assert rows[1]["t_s"] == pytest.approx(0.2, abs=0.1) and "no interface has an address" in rows[1]["error"]


def _has_interface(entry: ModuleType, subnet: str) -> bool:
    try:
        entry.interface_for_subnet(subnet)
    except RuntimeError:
        return False
    return True
