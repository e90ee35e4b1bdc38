"""``pamdi emulate SPEC --backend local|netns|docker|colosseum|ssh``: run a spec on real agents
(``--backend ssh --inventory lab.yaml``: on the hosts of a lab of the user's own machines).

Prints the same JSON as ``pamdi simulate`` (``--json``: nothing else on stdout) or a progress bar
(tasks finished per policy) and a table, and writes the run folder (``--out``, default
``results/runs/<spec>-<backend>-<time>``): ``manifest.json`` (spec, seed, backend, git commit,
package versions, host; written before the run), ``summary.json``, ``clocks.json``,
``<policy>/{tasks,spans}.jsonl``, ``<policy>/agents.json``, the agents' own traces under ``agents/``
and their logs under ``logs/``; after the run, as ``pamdi demo`` does, the Parquet tables, plots and
``report.md`` (``results.report``). Ctrl-C stops the agents cleanly, keeps what was measured and
still writes the report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from orchestrator.cli.choices import BackendName, DeviceTimeName, LogLevel
from orchestrator.cli.common import fail, print_json, select_policies


def _backend_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--backend-opt: expected KEY=VALUE, got {pair!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _print_table(name: str, backend: str, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.1f}"

    title = f"{name}: measured inference time per source (ms), backend {backend}"
    if summary.get("device_time"):
        title += f", device time {summary['device_time']}, stretch {summary.get('time_stretch', 1.0):g}"
    table = Table(title=title)
    for col in ("policy", "source", "γ", "done", "failed", "mean", "p50", "p95"):
        table.add_column(col, justify="left" if col in ("policy", "source") else "right")
    for run in summary["runs"]:
        for i, (src, s) in enumerate(run["sources"].items()):
            table.add_row(run["policy"] if i == 0 else "", src, f"{s['priority']:g}", str(s["completed"]),
                          str(s["failed"]), ms(s["mean_s"]), ms(s["p50_s"]), ms(s["p95_s"]))
        table.add_row("", "[dim]weighted[/dim]", "", "", "", ms(run["weighted_mean_s"]), "", "", end_section=True)
        for why in run.get("unfaithful", ()):
            table.add_row("", f"[yellow]not faithful: {escape(why)}[/yellow]", "", "", "", "", "", "", end_section=True)
    Console().print(table)


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar, one row per policy (tasks finished at their sources), or nothing."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    rows: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                  TimeElapsedColumn()) as progress:
        def update(policy: str, finished: int, total: int) -> None:
            if policy not in rows:
                for other in rows.values():  # the previous policy is over
                    progress.stop_task(other)
                rows[policy] = progress.add_task(f"policy {policy}", total=total)
            progress.update(rows[policy], completed=finished, total=total)

        yield update


def register(app: typer.Typer) -> None:
    @app.command()
    def emulate(
        spec: str = typer.Argument(..., help="spec file, or the name of a shipped spec"),
        backend: BackendName = typer.Option("local", "--backend", "-b", help="where the agents run"),
        policy: str = typer.Option(None, "--policy", "-p", help="policy name or 'all' (default: the spec's)"),
        as_json: bool = typer.Option(False, "--json", help="print the summary JSON"),
        out: Path = typer.Option(None, "--out", help="run folder (default results/runs/<run id>)"),
        insecure: bool = typer.Option(False, "--insecure",
                                      help="plaintext ZeroMQ: any process that reaches the agents may steer them"),
        task_timeout: float = typer.Option(60.0, "--task-timeout", help="seconds before a task counts as failed"),
        run_timeout: float = typer.Option(None, "--run-timeout", help="seconds per policy (default: from the spec)"),
        backend_opt: list[str] = typer.Option([], "--backend-opt", help="KEY=VALUE passed to the backend"),
        inventory: Path = typer.Option(None, "--inventory", "-i",
                                       help="lab inventory (lab.yaml) of --backend ssh: the hosts the agents run on"),
        device_time: DeviceTimeName = typer.Option(None, "--device-time",
                                                   help="how device time is produced (default: the spec's, else "
                                                        "the backend's)"),
        stretch: float = typer.Option(None, "--stretch", min=1.0,
                                      help="time stretch k (profile device time; default: what the host needs)"),
        log_level: LogLevel = typer.Option("warning", "--log-level", help="log level of the orchestrator"),
    ) -> None:
        """Run a spec on real agents (one per node) and measure every policy."""
        from orchestrator.backends import get_backend
        from orchestrator.experiment import run_experiment
        from orchestrator.runner import RunError, RunOptions
        from orchestrator.simulator import SimulationError
        from orchestrator.spec import SpecError, load_spec
        from orchestrator.specs import resolve_spec

        logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            path = resolve_spec(spec)
            s = load_spec(path)
        except (FileNotFoundError, SpecError) as err:
            raise fail(str(err)) from None
        policies = select_policies(policy, s)
        options = _backend_options(backend_opt)
        if inventory is not None:
            options["inventory"] = str(inventory)
        if backend == "ssh" and "inventory" not in options:
            raise fail("--backend ssh: give the lab's inventory, --inventory lab.yaml (see `pamdi lab --help`)")
        try:
            be = get_backend(backend, **options)
        except (ValueError, TypeError) as err:
            raise fail(f"--backend: {err}") from None
        run_dir = out or Path("results") / "runs" / f"{s.name}-{backend}-{time.strftime('%Y%m%d-%H%M%S')}"
        curve = False if insecure else None  # None: the backend's default (Curve, except Colosseum batch)
        if insecure and not as_json:
            typer.echo("warning: --insecure: CurveZMQ off, the agents take orders from anyone who reaches them",
                       err=True)
        opts = RunOptions(policies=policies, curve=curve, task_timeout_s=task_timeout, run_timeout_s=run_timeout,
                          device_time=device_time, time_stretch=stretch)
        extra = {"emulate": {
            "spec_path": str(path), "backend_options": options, "insecure": insecure,
            "task_timeout_s": task_timeout, "run_timeout_s": run_timeout, "device_time": device_time,
            "time_stretch": stretch}}
        with _progress(not as_json) as on_progress:
            try:
                exp = run_experiment(s, be, run_dir, opts, base_dir=path.parent, manifest_extra=extra,
                                     on_progress=on_progress)
            except (RunError, SimulationError, RuntimeError, ValueError) as err:
                raise fail(f"emulate: {err} (run folder: {run_dir})", code=1) from None
        if exp.report_error is not None:
            typer.echo(f"report: could not be written ({exp.report_error}); retry with `pamdi report {run_dir}`",
                       err=True)
        if exp.interrupted or exp.summary is None:
            typer.echo(f"interrupted: agents stopped; partial results in {run_dir}", err=True)
            raise typer.Exit(130)
        summary = exp.summary
        summary["run_dir"] = str(run_dir)
        rep = exp.report
        if rep is not None:
            summary["report"] = rep["report"]
        if as_json:
            print_json(summary)
        else:
            _print_table(s.name, backend, summary)
            typer.echo(f"run folder: {run_dir}")
            if rep is not None:
                typer.echo(f"report: {rep['report']}; plots: {', '.join(rep['images'])}")
