"""Sweeps (orchestrator/sweep): expansion and paths, one-line refusals, the Dask engine on a real
LocalCluster, a real `dask scheduler` + 2 `dask worker` processes and one worker (identical tables),
the cell cache (rerun, deleted cells, failed cells, a killed sweep), results against run_policies,
figures and report.md. Cells use the `small` spec with few samples (a few ms each)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.simulator import run_policies
from orchestrator.spec import load_spec, parse_spec
from orchestrator.specs import resolve_spec
from orchestrator.sweep import SweepError, expand, finish, parse_sweep, run_cells
from orchestrator.sweep.cells import set_path
from orchestrator.sweep.tables import build_table

REPO = Path(__file__).resolve().parent.parent

SMALL: dict[str, Any] = {
    "name": "t", "spec": "small", "policies": ["ar-mdi", "pa-mdi"], "seeds": 2,
    "overrides": {"sources.ts.samples": 12, "sources.nts.samples": 16},
    "axes": {"sources.nts.interval_ms": [7, 10]},
    "derived": {"ratio": {"values": [1, 10]}},
}


def small_cells(**changes: Any) -> list[Any]:
    return expand(parse_sweep({**SMALL, **changes}), REPO)


# ------------------------------------------------------------------------------------ expansion
def test_expansion_lands_values_in_the_right_fields() -> None:
    sweep = parse_sweep({
        "name": "x", "spec": "small", "policies": ["pa-mdi", "ddi"], "seeds": 2,
        "overrides": {"policy_params.pa-mdi.aging": 0.3, "sources.ts.partitions": "blocks"},
        "axes": {"sources.nts.interval_ms": [5, 9.5], "full_mesh.rate_mbit": [10], "nodes.c.speed": [0.25, 2]},
        "derived": {"ratio": {"values": [3]}},
    })
    cells = expand(sweep, REPO)
    assert len(cells) == 2 * 1 * 2 * 1 * 2 * 2  # axes x ratio x seeds x policies
    assert len({c.key for c in cells}) == len(cells)
    assert [c.key for c in cells] == [c.key for c in expand(sweep, REPO)]  # stable
    base = load_spec(resolve_spec("small"))
    for c in cells:
        point = dict(c.point)
        spec = parse_spec(c.spec)
        ts, nts = spec.sources
        assert nts.interval_ms == point["sources.nts.interval_ms"]
        assert spec.full_mesh is not None and spec.full_mesh.rate_mbit == 10
        assert spec.node("c").speed == point["nodes.c.speed"] and spec.node("a").speed == 1.0
        assert ts.priority == 3 * nts.priority == 3 * base.sources[1].priority
        assert ts.partitions == "blocks" and spec.policy_params == {"pa-mdi.aging": 0.3}
        assert spec.seed == c.seed and spec.policy == (c.policy,)
        assert ts.samples == base.sources[0].samples  # nothing else moved
    assert sorted({c.seed for c in cells}) == [base.seed, base.seed + 1]  # a count counts from the spec's seed


def test_nodes_axis_and_links_path() -> None:
    sweep = parse_sweep({"name": "n", "spec": "small", "policies": ["local"],
                         "derived": {"n": {"kind": "nodes", "values": [3, 5]}}})
    names = [[n["name"] for n in parse_spec(c.spec).model_dump()["nodes"]] for c in expand(sweep, REPO)]
    assert names == [["a", "b", "c"], ["a", "b", "c", "n1", "n2"]]
    data = load_spec(resolve_spec("paper-multihop-resnet56")).model_dump(mode="json", exclude_unset=True)
    set_path(data, "links.x2-x1.delay_ms", 7)  # either order names the link
    assert parse_spec(data).link("x1", "x2").delay_ms == 7


@pytest.mark.parametrize(("axes", "words"), [
    ({"sources.zz.interval_ms": [5]}, ["sources.zz.interval_ms=5", "no sources item 'zz'"]),
    ({"sources.nts.foo": [1]}, ["sources.nts.foo=1", "no field 'foo'"]),
    ({"nosuch": [1]}, ["nosuch=1", "no field 'nosuch'"]),
    ({"sources.nts.interval_ms": [7, -1]}, ["sources.nts.interval_ms=-1", "greater than 0"]),
    ({"full_mesh.rate_mbit": [0]}, ["full_mesh.rate_mbit=0", "rate_mbit"]),
    ({"sources.ts.partitions": ["many"]}, ["sources.ts.partitions='many'", "partitions"]),
])
def test_a_bad_axis_is_one_line_naming_axis_and_value(axes: dict[str, list[Any]], words: list[str]) -> None:
    with pytest.raises(SweepError) as err:
        expand(parse_sweep({"name": "b", "spec": "small", "axes": axes}), REPO)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_cli_refuses_before_running(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["sweep", "small", "--vary", "sources.nts.interval_ms=7,-1", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "axis sources.nts.interval_ms=-1" in res.output and not (tmp_path / "cells").exists()
    assert CliRunner().invoke(app, ["sweep", "nosuch-thing"]).exit_code == 2


def test_sweep_file_forms_and_shipped_sweeps() -> None:
    multi = parse_sweep({"name": "m", "seeds": [4, 9], "studies": [
        {"name": "one", "spec": "small"}, {"name": "two", "spec": "small", "policies": "pa-mdi"}]})
    cells = expand(multi, REPO)
    assert len(cells) == 2 * 5 + 2 * 1 and {c.seed for c in cells} == {4, 9}
    for bad in ({"name": "s", "spec": "small", "axes": {"seed": [1, 2]}},  # seeds: is the way
                {"name": "s", "spec": "small", "policies": ["fastest"]},
                {"name": "s", "spec": "small", "bogus": 1},
                {"name": "s", "spec": "small", "derived": {"policy": {"values": [2]}}}):
        with pytest.raises(SweepError):
            parse_sweep(bad)
    res = CliRunner().invoke(app, ["sweep", "paper", "--dry-run"])
    assert res.exit_code == 0 and "720 cells" in res.output, res.output
    res = CliRunner().invoke(app, ["sweep", "paper-resnet56-grid", "--dry-run"])
    assert "120 cells" in res.output
    res = CliRunner().invoke(app, ["sweep", "paper-emulated", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "paper-emulated" in CliRunner().invoke(app, ["sweep", "list"]).output


# --------------------------------------------------------------------------------------- engine
@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1 (random ports)."""
    info = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs = [(tmp_path / f"dask-{i}.log").open("wb") for i in range(3)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                       "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                                      stdout=logs[0], stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True))
        for i in (1, 2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                           str(info), "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"],
                                          stdout=logs[i], stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True))
        deadline = time.monotonic() + 60
        while not info.is_file() or not info.read_text().strip():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        # Each process leads its own group (a worker's nanny and its worker process): the group is ended.
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()


def test_same_table_on_local_cluster_external_cluster_and_one_worker(tmp_path: Path, dask_cluster: str) -> None:
    cells = small_cells()
    tables = {}
    for name, kw in (("local", {"workers": 2}), ("external", {"scheduler": dask_cluster}), ("one", {"workers": 1})):
        out = tmp_path / name
        stats = run_cells(cells, out, progress=False, echo=lambda _m: None, **kw)
        assert (stats.computed, stats.failed, stats.cached) == (len(cells), 0, 0)
        assert stats.workers == (1 if name == "one" else 2)
        tables[name] = build_table(cells, out)
    assert len(tables["local"]) == 2 * len(cells) and (tables["local"]["status"] == "ok").all()
    pd.testing.assert_frame_equal(tables["local"], tables["external"])
    pd.testing.assert_frame_equal(tables["local"], tables["one"])


def _hand_spec(interval_ms: float, ratio: float, seed: int) -> Any:
    """The small sweep's cell spec built without the sweep code."""
    base = load_spec(resolve_spec("small"))
    ts, nts = base.sources
    nts = nts.model_copy(update={"samples": 16, "interval_ms": interval_ms})
    ts = ts.model_copy(update={"samples": 12, "priority": ratio * nts.priority})
    return base.model_copy(update={"sources": (ts, nts), "seed": seed})


def test_cache_reruns_nothing_recomputes_deleted_and_retries_failed(tmp_path: Path) -> None:
    cells = small_cells(axes={"sources.nts.interval_ms": [7, 10], "profiles": [None, "/nonexistent-profiles"]},
                        seeds=1)
    out = tmp_path / "s"
    stats = run_cells(cells, out, workers=1, progress=False, echo=lambda _m: None)
    bad = [c for c in cells if dict(c.point)["profiles"]]
    assert (stats.computed, stats.failed) == (len(cells), len(bad)) and 0 < len(bad) < len(cells)
    df = build_table(cells, out)
    failed = df[df["status"] == "failed"]
    assert set(failed["cell"]) == {c.key for c in bad}
    assert failed["error"].str.contains("SimulationError").all() and failed["mean_s"].isna().all()
    assert (df[df["status"] == "ok"]["completed"] > 0).all()

    # A cell's numbers are run_policies' on the same spec, built by hand.
    row = df[(df["status"] == "ok") & (df["policy"] == "pa-mdi") & (df["source"] == "ts")
             & (df["sources.nts.interval_ms"] == 10) & (df["ratio"] == 10)].iloc[0]
    summary, _ = run_policies(_hand_spec(10, 10, int(row["seed"])), ["pa-mdi"])
    ref = summary["runs"][0]
    assert row["mean_s"] == ref["sources"]["ts"]["mean_s"] and row["p95_s"] == ref["sources"]["ts"]["p95_s"]
    assert row["weighted_mean_s"] == ref["weighted_mean_s"]

    again = run_cells(cells, out, workers=1, progress=False, echo=lambda _m: None)  # retries only the failed ones
    assert (again.computed, again.failed, again.cached) == (len(bad), len(bad), len(cells) - len(bad))
    good = [c for c in cells if c not in bad]
    for c in good[:2]:
        (out / "cells" / f"{c.key}.json").unlink()
    rerun = run_cells(good, out, workers=1, progress=False, echo=lambda _m: None)
    assert (rerun.computed, rerun.failed) == (2, 0)
    t0 = time.perf_counter()
    cached = run_cells(good, out, progress=False, echo=lambda _m: None)
    assert cached.computed == 0 and cached.cached == len(good) and time.perf_counter() - t0 < 1.0
    pd.testing.assert_frame_equal(build_table(good, out), df[df["status"] == "ok"].reset_index(drop=True))


def test_killed_sweep_resumes_with_the_rest_only(tmp_path: Path) -> None:
    out = tmp_path / "k"
    args = ["small", "--vary", "sources.nts.interval_ms=6,7,8,9,10", "--ratio", "1,2,5,10", "--policy",
            "ar-mdi,pa-mdi", "--seeds", "1", "--workers", "1", "--out", str(out), "--json"]
    proc = subprocess.Popen([sys.executable, "-c", "from orchestrator.cli import main; main()", "sweep", *args],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "cells").glob("*.json"))) < 5 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its cluster's worker processes
        proc.wait()
    cells = small_cells(axes={"sources.nts.interval_ms": [6, 7, 8, 9, 10]}, seeds=1,
                        derived={"ratio": {"values": [1, 2, 5, 10]}}, overrides={})
    done = sum(1 for c in cells if (out / "cells" / f"{c.key}.json").is_file())
    assert len(cells) == 40 and done >= 5
    stats = run_cells(cells, out, workers=1, progress=False, echo=lambda _m: None)
    assert (stats.cached, stats.computed, stats.failed) == (done, len(cells) - done, 0)


def test_cli_writes_table_figures_and_report(tmp_path: Path) -> None:
    out = tmp_path / "c"
    args = ["sweep", "small", "--vary", "sources.nts.interval_ms=7,10", "--ratio", "1,10", "--set",
            "sources.ts.samples=12", "--set", "sources.nts.samples=16", "--seeds", "2", "--policy",
            "ar-mdi,ms-mdi,pa-mdi", "--workers", "2", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "cells.parquet")
    assert len(df) == 2 * 2 * 2 * 3 * 2 and (df["status"] == "ok").all()
    for stem in ("small-sweep-sources.nts.interval_ms", "small-sweep-ratio", "small-sweep-bars"):
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    # The largest TS reduction of PA-MDI against AR-MDI, computed here from the table alone.
    ts = df[df["role"] == "TS"].groupby(["sources.nts.interval_ms", "ratio", "policy"])["mean_s"].mean().unstack()
    red = 100 * (ts["ar-mdi"] - ts["pa-mdi"]) / ts["ar-mdi"]
    at = red.idxmax()
    report = (out / "report.md").read_text()
    line = next(x for x in report.splitlines() if x.startswith("| vs ar-mdi |"))
    assert f"| {red.max():.1f}% | sources.nts.interval_ms={at[0]:g}, ratio={at[1]:g} |" in line, line
    assert f"{red.max():.1f}%" in res.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 computed, 24 cached" in again.output


# ------------------------------------------------------------------------------------- emulation
TINY = {"name": "tiny2", "seed": 1, "nodes": [{"name": "a"}, {"name": "b"}],
        "full_mesh": {"rate_mbit": 100, "delay_ms": 1},
        "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 3, "interval_ms": 50},
                    {"name": "nts", "node": "b", "model": "tiny", "priority": 1, "samples": 3, "interval_ms": 50}]}


def _emulate(tmp_path: Path, backend: str) -> None:
    import yaml

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    sweep = parse_sweep({"name": "e", "spec": "tiny.yaml", "mode": "emulate", "backend": backend,
                         "task_timeout_s": 20, "policies": ["pa-mdi"], "axes": {"sources.nts.interval_ms": [40]}})
    cells = expand(sweep, tmp_path)
    out = tmp_path / "out"
    stats = run_cells(cells, out, progress=False, echo=lambda _m: None)
    df = build_table(cells, out)
    assert stats.workers == 1 and (df["status"] == "ok").all(), df["error"].tolist()
    assert (df["mode"] == "emulate").all() and (df["completed"] == 3).all()
    assert (out / "runs" / cells[0].key / "manifest.json").is_file()
    finish(cells, out, sweep, stats)
    assert (out / "report.md").is_file()


@pytest.mark.slow
def test_emulated_cell_on_the_local_backend(tmp_path: Path) -> None:
    _emulate(tmp_path, "local")


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the netns backend needs root")
def test_emulated_cell_on_netns(tmp_path: Path) -> None:
    _emulate(tmp_path, "netns")
