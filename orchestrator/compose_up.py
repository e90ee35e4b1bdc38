"""``pamdi compose SPEC --out DIR --up``: run a rendered compose project from this host, harvest it,
and write the report.

The node image carries only the agent's dependencies (no pandas, pyarrow or matplotlib), so the
coordinator container writes the run's records but not its report; this host has them. Steps:
``docker compose up --abort-on-container-exit --exit-code-from coordinator``, every service's log
saved to ``traces/logs/<service>.log`` (the nodes' shaping and scenario lines among them), ``down``
(also after a failed or interrupted ``up``), then ``results.report.report(traces/)``: Parquet
tables, plots and ``report.md`` beside the records, as ``pamdi emulate`` leaves them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.compose import COORDINATOR, compose_cli


@dataclass
class ComposeRun:
    returncode: int  # the coordinator's exit status (compose up --exit-code-from)
    traces: Path
    logs: list[Path] = field(default_factory=list)
    report: dict[str, Any] | None = None  # results.report.report's answer
    report_error: str | None = None
    output: str = ""  # compose up's output when captured


def up_project(directory: str | Path, *, cli: Sequence[str] | None = None, project_name: str | None = None,
               capture: bool = False, timeout_s: float | None = None) -> ComposeRun:
    """Run the project in ``directory`` to its end (see the module doc). ``project_name``: instead
    of the one in ``.env``; ``capture``: keep compose's output rather than showing it."""
    directory = Path(directory).resolve()
    base = [*(cli or compose_cli()), *(["-p", project_name] if project_name else []),
            "-f", str(directory / "docker-compose.yml")]
    traces = directory / "traces"
    out = ComposeRun(returncode=1, traces=traces)
    try:
        up = subprocess.run([*base, "up", "--abort-on-container-exit", "--exit-code-from", COORDINATOR],
                            cwd=directory, capture_output=capture, text=True, timeout=timeout_s, check=False)
        out.returncode, out.output = up.returncode, (up.stdout or "") + (up.stderr or "")
        out.logs = _save_logs(base, directory, traces / "logs")
    finally:  # nothing of the project outlives the command, whatever happened
        subprocess.run([*base, "down", "--remove-orphans"], cwd=directory, capture_output=True, timeout=180,
                       check=False)
    if (traces / "summary.json").is_file():
        try:
            from results.report import report

            out.report = report(traces)
        except Exception as err:  # the records stay; `pamdi report traces/` can retry
            out.report_error = f"{type(err).__name__}: {err}"
    else:
        out.report_error = "no summary.json: the run wrote no results"
    return out


def _save_logs(base: Sequence[str], directory: Path, dest: Path) -> list[Path]:
    """Each service's log (what its container printed), before ``down`` removes the containers."""
    import yaml

    services = list(yaml.safe_load((directory / "docker-compose.yml").read_text())["services"])
    dest.mkdir(parents=True, exist_ok=True)
    saved = []
    for name in services:
        proc = subprocess.run([*base, "logs", "--no-color", name], cwd=directory, capture_output=True, text=True,
                              timeout=60, check=False)
        if proc.returncode == 0:
            path = dest / f"{name}.log"
            path.write_text(proc.stdout)
            saved.append(path)
    return saved
