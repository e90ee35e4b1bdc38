"""A jittered link under the real runner (netns backend: namespaces, tc, agents, sockets): the
emulated mean and spread agree with the simulator's, and the topology says what applied the jitter."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, tc, cgroups)"),
    pytest.mark.timeout(180),
]

# Source a is very slow (speed 0.02: the tiny model's ~1 ms is 50 ms there), so AR-MDI moves most
# of each model to b; every task crosses the 40 ms ± 30 ms link twice (activation, result), so the latency spreads
# by about sqrt(2/3) x 30 = 24 ms around a mean that the jitter and the in-order release set.
SPEC = {
    "name": "jitter-agree", "seed": 3,
    "nodes": [{"name": "a", "speed": 0.02}, {"name": "b"}],
    "links": [{"a": "a", "b": "b", "rate_mbit": 20, "delay_ms": 40, "jitter_ms": 30}],
    "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 32, "interval_ms": 250}],
    "policy": ["ar-mdi"], "beacon_period_ms": 100,
}


def test_jittered_link_emulation_agrees_with_simulation(tmp_path: Path) -> None:
    from orchestrator.backends import get_backend
    from orchestrator.predict import run_and_compare
    from orchestrator.runner import Runner, RunOptions
    from orchestrator.simulator import simulate
    from orchestrator.spec import parse_spec

    spec = parse_spec(SPEC)
    run_dir = tmp_path / "run"
    backend = get_backend("netns", pcap=False)
    runner = Runner(spec, backend, run_dir, RunOptions(run_timeout_s=60))
    emu, (row,) = run_and_compare(spec, backend, run_dir, RunOptions(run_timeout_s=60), runner=runner)
    e = emu["runs"][0]["sources"]["ts"]
    assert e["completed"] == 32 and e["failed"] == 0, e
    (result,) = runner.results
    assert all(any(node == "b" for node, _, _ in r.placements) for r in result.records), result.records[0]
    # (32 tasks, each latency spread by ~24 ms: 15% of the mean is over 3 standard errors.)
    assert row["emulated_mean_s"] == pytest.approx(row["sim_mean_s"], rel=0.15), row
    # The spread is the jitter's: far above a jitter-free link's, close to the simulated one.
    emu_sd = statistics.pstdev(r.latency_s for r in result.records)
    sim = simulate(spec, "ar-mdi", profiles=runner.profiles)
    sim_sd = statistics.pstdev(r.latency_s for r in sim.records)
    print(f"jitter emulation: mean {row['emulated_mean_s']:.4f} s (simulated {row['sim_mean_s']:.4f}), "
          f"sd {emu_sd:.4f} s (simulated {sim_sd:.4f})")
    assert 0.012 < emu_sd < 0.040 and 0.012 < sim_sd < 0.040, (emu_sd, sim_sd)
    topo = json.loads(next(run_dir.rglob("topology.json")).read_text())
    (lk,) = topo["links"]
    expected_stage = "netem" if topo["delay_stage"] == "netem" else "agent"
    assert (lk["jitter_ms"], lk["jitter_stage"]) == (pytest.approx(30 * runner.stretch), expected_stage), lk
