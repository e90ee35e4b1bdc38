"""``pamdi emulate SPEC --backend local|netns|docker|colosseum``: run a spec on real agents.

Prints the same JSON as ``pamdi simulate`` (``--json``) or a table, and writes the run folder
(``--out``, default ``results/runs/<run id>``): ``summary.json``, ``clocks.json``,
``<policy>/{tasks,spans}.jsonl``, ``<policy>/agents.json``, the agents' own traces under ``agents/``
and their logs under ``logs/``. Ctrl-C stops the agents cleanly and keeps what was measured.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import typer

from orchestrator.cli.common import fail, print_json


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
    from rich.table import Table

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.1f}"

    table = Table(title=f"{name}: measured inference time per source (ms), backend {backend}")
    for col in ("policy", "source", "γ", "done", "failed", "mean", "p50", "p95"):
        table.add_column(col, justify="left" if col in ("policy", "source") else "right")
    for run in summary["runs"]:
        for i, (src, s) in enumerate(run["sources"].items()):
            table.add_row(run["policy"] if i == 0 else "", src, f"{s['priority']:g}", str(s["completed"]),
                          str(s["failed"]), ms(s["mean_s"]), ms(s["p50_s"]), ms(s["p95_s"]))
        table.add_row("", "[dim]weighted[/dim]", "", "", "", ms(run["weighted_mean_s"]), "", "", end_section=True)
    Console().print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def emulate(
        spec: str = typer.Argument(..., help="spec file, or the name of a shipped spec"),
        backend: str = typer.Option("local", "--backend", "-b", help="local, netns, docker or colosseum"),
        policy: str = typer.Option(None, "--policy", "-p", help="policy name or 'all' (default: the spec's)"),
        as_json: bool = typer.Option(False, "--json", help="print the summary JSON"),
        out: Path = typer.Option(None, "--out", help="run folder (default results/runs/<run id>)"),
        curve: bool = typer.Option(None, "--curve/--no-curve", help="CurveZMQ (default: off on loopback, else on)"),
        task_timeout: float = typer.Option(60.0, "--task-timeout", help="seconds before a task counts as failed"),
        run_timeout: float = typer.Option(None, "--run-timeout", help="seconds per policy (default: from the spec)"),
        backend_opt: list[str] = typer.Option([], "--backend-opt", help="KEY=VALUE passed to the backend"),
        log_level: str = typer.Option("warning", "--log-level", help="debug, info, warning or error"),
    ) -> None:
        """Run a spec on real agents (one per node) and measure every policy."""
        from orchestrator.backends import get_backend
        from orchestrator.runner import RunError, Runner, RunOptions
        from orchestrator.simulator import SimulationError
        from orchestrator.spec import DEFAULT_POLICIES, POLICY_NAMES, SpecError, load_spec
        from orchestrator.specs import resolve_spec

        logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            path = resolve_spec(spec)
            s = load_spec(path)
        except (FileNotFoundError, SpecError) as err:
            raise fail(str(err)) from None
        if policy is None:
            policies = list(s.policy)
        elif policy == "all":
            policies = list(DEFAULT_POLICIES)
        elif policy in POLICY_NAMES:
            policies = [policy]
        else:
            raise fail(f"--policy: unknown policy {policy!r}; known: {', '.join(POLICY_NAMES)}, all")
        try:
            be = get_backend(backend, **_backend_options(backend_opt))
        except (ValueError, TypeError) as err:
            raise fail(f"--backend: {err}") from None
        run_dir = out or Path("results") / "runs" / f"{s.name}-{backend}-{time.strftime('%Y%m%d-%H%M%S')}"
        opts = RunOptions(policies=policies, curve=curve, task_timeout_s=task_timeout, run_timeout_s=run_timeout)
        runner = Runner(s, be, run_dir, opts, base_dir=path.parent)
        try:
            summary = runner.run()
        except KeyboardInterrupt:
            typer.echo(f"interrupted: agents stopped; partial results in {run_dir}", err=True)
            raise typer.Exit(130) from None
        except (RunError, SimulationError, RuntimeError, ValueError) as err:
            raise fail(f"emulate: {err} (run folder: {run_dir})", code=1) from None
        summary["run_dir"] = str(run_dir)
        if as_json:
            print_json(summary)
        else:
            _print_table(s.name, backend, summary)
            typer.echo(f"run folder: {run_dir}")
