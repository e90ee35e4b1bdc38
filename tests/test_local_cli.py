"""``pamdi emulate --backend local`` end to end through the CLI, and Ctrl-C in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

PAMDI = [sys.executable, "-c", "from orchestrator.cli import main; main()"]

SPEC = {
    "name": "cli", "seed": 1,
    "nodes": [{"name": "a", "speed": 0.1}, {"name": "b"}, {"name": "c"}],
    "full_mesh": {"rate_mbit": 1000},
    "sources": [
        {"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 8, "interval_ms": 10},
        {"name": "nts", "node": "b", "model": "tiny", "priority": 1, "samples": 8, "interval_ms": 10},
    ],
    "beacon_period_ms": 50,
}


def _agents_of(run_dir: Path) -> list[int]:
    """Processes still running an agent of this run (their --trace-dir is inside run_dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "pamdi_node" in cmd and str(run_dir) in cmd:
                pids.append(int(proc.name))
    return pids


def test_emulate_prints_the_simulate_json_shape(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "run"
    p = subprocess.run([*PAMDI, "emulate", str(spec), "--backend", "local", "--policy", "pa-mdi", "--json",
                        "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    (run,) = summary["runs"]
    assert run["policy"] == "pa-mdi"
    for name, prio in (("ts", 10), ("nts", 1)):
        s = run["sources"][name]
        assert s["priority"] == prio and s["completed"] == 8 and s["failed"] == 0
        assert 0 < s["p50_s"] <= s["p95_s"] and s["mean_s"] > 0
    ts, nts = run["sources"]["ts"]["mean_s"], run["sources"]["nts"]["mean_s"]
    assert abs(run["weighted_mean_s"] - (10 * ts + nts) / 11) < 1e-9
    assert len((out / "pa-mdi" / "tasks.jsonl").read_text().splitlines()) == 16
    assert sorted(p.name for p in (out / "agents").iterdir()) == sorted(
        f"{n}.{k}.jsonl" for n in "abc" for k in ("spans", "tasks"))
    assert _agents_of(out) == []
    # The run folder is complete, as pamdi demo's: manifest before the run, tables, plots, report after.
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "local" and manifest["policies"] == ["pa-mdi"] and manifest["spec"]["name"] == "cli"
    import pandas as pd

    tasks = pd.read_parquet(out / "tasks.parquet")
    assert len(tasks) == 16 and set(tasks["source"]) == {"ts", "nts"}
    assert len(pd.read_parquet(out / "spans.parquet")) > 0
    assert (out / "cdf.png").stat().st_size > 0 and summary["report"] == str(out / "report.md")
    assert (out / "report.md").read_text().count("| pa-mdi | ts |") == 1


def test_ctrl_c_stops_agents_and_keeps_what_was_measured(tmp_path: Path) -> None:
    long = dict(SPEC, sources=[{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 5000,
                               "interval_ms": 20}])
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(long))
    out = tmp_path / "run"
    proc = subprocess.Popen([*PAMDI, "emulate", str(spec), "--backend", "local", "--policy", "pa-mdi",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.time() + 120
    while not (out / "agents" / "a.spans.jsonl").exists() or (out / "agents" / "a.spans.jsonl").stat().st_size == 0:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert (out / "manifest.json").exists() and (out / "report.md").exists()  # the report covers what ran
    records = [json.loads(line) for line in (out / "pa-mdi" / "tasks.jsonl").read_text().splitlines()]
    done = [r for r in records if r["status"] == "completed"]
    assert len(records) == 5000 and len(done) >= 20  # every task accounted for, the measured ones kept
    assert {r["reason"] for r in records if r["status"] != "completed"} <= {
        "interrupted (Ctrl-C)", "stopped before completion"}
    assert json.loads((out / "summary.json").read_text())["runs"][0]["sources"]["ts"]["completed"] == len(done)
    time.sleep(0.5)
    assert _agents_of(out) == []
