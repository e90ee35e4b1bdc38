"""Run folder traces: manifest and Parquet tables.

Layout of ``results/runs/<run-id>/`` (the runner writes the JSONL, this module the rest)::

    manifest.json            spec, seed, backend, git commit, package versions, host
    summary.json             metrics.summarize JSON (runner)
    <policy>/tasks.jsonl     one record per task (runner)
    <policy>/spans.jsonl     decide/queue/compute/serialize/transfer/... spans on the orchestrator clock
    tasks.parquet            every policy's tasks, one table
    spans.parquet            every policy's spans, one table
    links/tc_stats.jsonl     per-link, per-direction tc counters sampled over time (netns backend)
    links/tc_stats.parquet   the same as a table
    pcap/*.pcap              optional per-link captures, headers only (netns backend, pcap=True)
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("pamdi", "torch", "numpy", "pyzmq", "msgpack", "pydantic", "pyroute2", "pandas", "pyarrow",
            "matplotlib", "simpy", "transformers")


def git_commit(repo: Path | None = None) -> str | None:
    here = repo or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(), "kernel": platform.release(), "machine": platform.machine(),
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["loadavg"] = list(os.getloadavg())
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def write_manifest(run_dir: Path, spec: Any, *, backend: str, policies: list[str], extra: dict | None = None) -> Path:
    """``spec`` is an ExperimentSpec (dumped whole, so the run can be repeated from the folder)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backend": backend,
        "policies": policies,
        "seed": spec.seed,
        "spec": spec.model_dump(mode="json"),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "host": host_info(),
        **(extra or {}),
    }
    path = run_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def merge_manifest(run_dir: Path, extra: dict[str, Any]) -> None:
    """Add ``extra`` to the run folder's ``manifest.json`` (written by the CLI before the run), if any."""
    path = Path(run_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    manifest.update(extra)
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def _read_jsonl(paths: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in paths:
        with p.open() as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    return rows


def _frame(rows: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    import pandas as pd

    df = pd.DataFrame(rows)
    # Lists/dicts (placements, blocks) do not map onto one Arrow type across rows: keep them as JSON text.
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, (list, dict))).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return df


def run_identity(run_dir: Path) -> dict[str, Any]:
    """``run_id``, ``backend``, ``seed`` and each source's ``priority`` of a run folder (from its
    manifest and summary; the folder's name when it has no run id)."""
    run_dir = Path(run_dir)
    ident: dict[str, Any] = {"run_id": run_dir.name, "backend": None, "seed": None, "priorities": {}}
    with contextlib.suppress(OSError, ValueError):
        man = json.loads((run_dir / "manifest.json").read_text())
        ident["backend"], ident["seed"] = man.get("backend"), man.get("seed")
        ident["priorities"] = {s["name"]: s.get("priority") for s in (man.get("spec") or {}).get("sources", [])}
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads((run_dir / "summary.json").read_text())
        ident["run_id"] = summary.get("run_id") or ident["run_id"]
        ident["priorities"] = {**summary.get("priorities", {}), **ident["priorities"]}
    return ident


def tables(run_dir: Path) -> dict[str, Path]:
    """Write the Parquet tables of a run folder from its JSONL; returns what was written. Every row
    carries ``run_id``, ``backend`` and ``seed`` (tasks also ``priority`` and ``latency_s``), so
    that the tables of many runs concatenate in pandas without joins."""
    run_dir = Path(run_dir)
    written: dict[str, Path] = {}
    ident = run_identity(run_dir)
    for kind in ("tasks", "spans"):
        files = sorted(run_dir.glob(f"*/{kind}.jsonl"))
        rows = _read_jsonl(files)
        if rows:
            path = run_dir / f"{kind}.parquet"
            df = _frame(rows)
            for col in ("run_id", "backend", "seed"):
                df[col] = ident[col]
            if kind == "tasks":
                df["priority"] = df["source"].map(lambda s: ident["priorities"].get(s))
                df["latency_s"] = df["done_s"] - df["born_s"]  # NaN for a failed task
            df.to_parquet(path, index=False)
            written[kind] = path
    stats = run_dir / "links" / "tc_stats.jsonl"
    if stats.exists():
        rows = _read_jsonl([stats])
        if rows:
            path = stats.with_suffix(".parquet")
            _frame(rows).to_parquet(path, index=False)
            written["tc_stats"] = path
    return written
