"""Run folder -> Parquet tables, per-source statistics, TS reductions, plots and report.md."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from results.report import report
from results.trace import write_manifest


def _write_run(run_dir: Path) -> dict[tuple[str, str], list[float]]:
    latencies = {
        ("local", "ts"): [0.40, 0.50, 0.60], ("local", "nts"): [1.0, 1.2],
        ("pa-mdi", "ts"): [0.10, 0.20, 0.30], ("pa-mdi", "nts"): [1.5, 1.7],
        ("ms-mdi", "ts"): [0.25, 0.25, 0.25], ("ms-mdi", "nts"): [1.1, 1.3],
    }
    for (policy, src), values in latencies.items():
        d = run_dir / policy
        d.mkdir(parents=True, exist_ok=True)
        with (d / "tasks.jsonl").open("a") as f:
            for i, lat in enumerate(values):
                f.write(json.dumps({"policy": policy, "source": src, "task_id": f"{src}-{i}", "born_s": 100.0 + i,
                                    "done_s": 100.0 + i + lat, "status": "completed", "reason": "",
                                    "placements": [["a", 0, 3]], "hops": 0}) + "\n")
            f.write(json.dumps({"policy": policy, "source": src, "task_id": f"{src}-x", "born_s": 99.0,
                                "done_s": None, "status": "failed", "reason": "timeout", "placements": [],
                                "hops": 0}) + "\n")
        with (d / "spans.jsonl").open("a") as f:
            f.write(json.dumps({"policy": policy, "node": "a", "kind": "compute", "task": f"{src}-0", "source": src,
                                "start": 100.0, "end": 100.1, "blocks": [0, 3]}) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({"priorities": {"ts": 10, "nts": 1}}))
    return latencies


def test_report_numbers_and_files(tmp_path: Path) -> None:
    from orchestrator.spec import parse_spec

    lat = _write_run(tmp_path)
    spec = parse_spec({"name": "r", "nodes": [{"name": "a"}],
                       "sources": [{"name": "ts", "node": "a", "model": "tiny"}]})
    write_manifest(tmp_path, spec, backend="netns", policies=["local", "pa-mdi", "ms-mdi"])
    out = report(tmp_path)
    rows = {(r["policy"], r["source"]): r for r in out["sources"]}
    for key, values in lat.items():
        assert rows[key]["mean_s"] == pytest.approx(statistics.mean(values))
        assert rows[key]["p50_s"] == pytest.approx(statistics.median(values))
        assert rows[key]["completed"] == len(values) and rows[key]["failed"] == 1
    assert out["ts_source"] == "ts"
    red = out["ts_reduction_pct"]
    assert red["local"] == pytest.approx(100 * (0.5 - 0.2) / 0.5)
    assert red["ms-mdi"] == pytest.approx(100 * (0.25 - 0.2) / 0.25)
    for img in out["images"]:
        assert Path(img).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = Path(out["report"]).read_text()
    assert "| pa-mdi | ts | 3 | 1 | 200.0 |" in md and "+60.0%" in md
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["spec"]["name"] == "r" and man["packages"]["torch"] and man["host"]["cpus"]
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "tasks.parquet")) == sum(len(v) + 1 for v in lat.values())


def test_report_cli_rejects_empty_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    pamdi = str(Path(sys.executable).parent / "pamdi")
    out = subprocess.run([pamdi, "report", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0 and "no tasks" in out.stderr


def test_cdf_counts_failed_tasks_and_svg_beside_png(tmp_path: Path) -> None:
    # Each (policy, source) of the fixture has one failed task: every curve must end at
    # completed / total (< 1), and the legend say so; the SVG is written beside each PNG.
    import pandas as pd

    from results.report import cdf_curves, load_tasks

    lat = _write_run(tmp_path)
    out = report(tmp_path)
    curves = cdf_curves(load_tasks(tmp_path))
    for (policy, src), values in lat.items():
        c = curves[(src, policy)]
        assert c["failed"] == 1 and c["total"] == len(values) + 1
        assert list(c["x_ms"]) == pytest.approx(sorted(1000 * v for v in values))
        assert c["y"][-1] == pytest.approx(len(values) / (len(values) + 1))
    svg = Path(out["svg"][0])
    assert svg.name == "cdf.svg" and svg.read_text().lstrip().startswith("<?xml")
    assert "1 of 4 failed" in svg.read_text()  # the TS legend (3 completed + 1 failed)
    first = svg.read_bytes()
    report(tmp_path)
    assert svg.read_bytes() == first  # same figure, same bytes (no date, salted ids)
    assert isinstance(pd.read_parquet(tmp_path / "tasks.parquet"), pd.DataFrame)


def test_tables_carry_the_run_and_report_says_why_tasks_failed_and_the_nts_cost(tmp_path: Path) -> None:
    import pandas as pd

    from orchestrator.spec import parse_spec

    lat = _write_run(tmp_path)
    spec = parse_spec({"name": "r", "seed": 7, "nodes": [{"name": "a"}],
                       "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10},
                                   {"name": "nts", "node": "a", "model": "tiny", "priority": 1}]})
    write_manifest(tmp_path, spec, backend="netns", policies=["local", "pa-mdi", "ms-mdi"])
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "r-20261203-abc", "priorities": {"ts": 10, "nts": 1}}))
    out = report(tmp_path)
    tasks = pd.read_parquet(tmp_path / "tasks.parquet")
    assert set(tasks["run_id"]) == {"r-20261203-abc"} and set(tasks["backend"]) == {"netns"}
    assert set(tasks["seed"]) == {7}
    assert dict(zip(tasks["source"], tasks["priority"], strict=True)) == {"ts": 10, "nts": 1}
    done = tasks[tasks["status"] == "completed"]
    assert list(done["latency_s"]) == pytest.approx(list(done["done_s"] - done["born_s"]))
    assert tasks[tasks["status"] == "failed"]["latency_s"].isna().all()
    spans = pd.read_parquet(tmp_path / "spans.parquet")
    assert set(spans["run_id"]) == {"r-20261203-abc"}
    md = Path(out["report"]).read_text()
    # One failed task per (policy, source), all with reason "timeout": six rows of 1.
    assert "## Failed tasks" in md and md.count("| timeout | 1 |") == len(lat)
    # NTS cost: PA-MDI's NTS mean (1.6 s) against local (1.1) and ms-mdi (1.2), as a signed change.
    assert "## What it costs the other sources" in md
    assert f"| nts | {100 * (1.1 - 1.6) / 1.1:+.1f}% | - | {100 * (1.2 - 1.6) / 1.2:+.1f}% | - |" in md


def test_report_says_how_far_each_policy_run_can_be_trusted(tmp_path: Path) -> None:
    """The Fidelity section comes from summary.json: device time, stretch, overruns, the simulator's
    prediction, and each reason a policy run is not faithful (here an agent that failed internally)."""
    _write_run(tmp_path)
    runs = [{"policy": "pa-mdi", "device_time": "profile", "time_stretch": 1.45, "overrun_fraction": 0.012,
             "faithful": True, "sources": {"ts": {"sim_mean_s": 0.2}, "nts": {"sim_mean_s": 1.6}}},
            {"policy": "ms-mdi", "device_time": "profile", "time_stretch": 1.45, "overrun_fraction": 0.0,
             "faithful": False, "sources": {"ts": {"sim_mean_s": None}},
             "unfaithful": ["agents failed internally: b x23 (WireError: beacon)"]}]
    (tmp_path / "summary.json").write_text(json.dumps({"priorities": {"ts": 10, "nts": 1}, "runs": runs}))
    md = Path(report(tmp_path)["report"]).read_text()
    assert "## Fidelity" in md
    assert "| pa-mdi | profile | 1.45 | 1.2% | ts 200.0, nts 1600.0 | yes |" in md
    assert "| ms-mdi | profile | 1.45 | 0.0% | - | **no** |" in md
    assert "- ms-mdi: not faithful: agents failed internally: b x23 (WireError: beacon)" in md


def test_mean_confidence_interval_is_batch_means_over_arrival_order(tmp_path: Path) -> None:
    """The 95% CI of a source's mean: 10 consecutive batches of the tasks in arrival order, Student t
    over the batch means (t(9, 0.975) = 2.262157), computed here by hand; tasks that queue together
    (correlated, as below) give a wider interval than a t-interval over single tasks would."""
    import math
    import random

    from results.report import batch_means_ci95, source_table

    rng = random.Random(5)
    lat, x = [], 0.2
    for _ in range(53):  # a queue-like, correlated series; 53 = 10 batches of 5 and 3 left over
        x = max(0.01, 0.8 * x + 0.2 * 0.2 + rng.gauss(0, 0.05))
        lat.append(x)
    d = tmp_path / "pa-mdi"
    d.mkdir()
    order = list(range(len(lat)))
    rng.shuffle(order)  # written out of order: the table sorts by birth
    with (d / "tasks.jsonl").open("w") as f:
        for i in order:
            f.write(json.dumps({"policy": "pa-mdi", "source": "ts", "task_id": f"t{i}", "born_s": 100.0 + i,
                                "done_s": 100.0 + i + lat[i], "status": "completed", "reason": "",
                                "placements": [["a", 0, 3]], "hops": 0}) + "\n")
    out = report(tmp_path)
    batch = [statistics.fmean(lat[5 * b:5 * b + 5]) for b in range(10)]
    want = 2.262157 * statistics.stdev(batch) / math.sqrt(10)
    row = out["sources"][0]
    assert row["ci95_s"] == pytest.approx(want, rel=1e-5)
    naive = 1.96 * statistics.stdev(lat) / math.sqrt(len(lat))
    assert row["ci95_s"] > naive
    assert f"±{want * 1000:.1f}" in Path(out["report"]).read_text()
    assert any(p.endswith("means.png") for p in out["images"]) and (tmp_path / "means.svg").exists()
    assert batch_means_ci95(lat[:9]) is None  # fewer than 2 batches of 5: no interval
    import pandas as pd

    df = pd.read_parquet(tmp_path / "tasks.parquet")
    assert source_table(df)[0]["ci95_s"] == pytest.approx(want, rel=1e-5)
