"""``pamdi sweep``: parameter studies over a spec on Dask, cached per cell (``orchestrator/sweep/``).

Forms::

    pamdi sweep SWEEP.yaml | SHIPPED-SWEEP [--seeds N] [--policy P] [--workers N | --scheduler tcp://H:P] [--out DIR]
    pamdi sweep SPEC --vary PATH=V1,V2,... [--vary ...] [--ratio R1,R2,...] [--set PATH=V] --seeds N
    pamdi sweep list

Every cell is validated before anything runs (a bad axis value: one line, exit 2). Exit 1 when a
cell failed (all the others are computed and reported all the same), 130 when interrupted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from orchestrator.cli.choices import SweepBackend, SweepMode
from orchestrator.cli.common import fail, print_json


def _sweep_data(path: Path) -> Any | None:
    """The YAML data of ``path`` if it is a sweep file, else None (then it is a spec)."""
    from orchestrator.spec import SpecError
    from orchestrator.specfile import read_spec_yaml
    from orchestrator.sweep.spec import SweepError, is_sweep_data

    try:
        data = read_spec_yaml(path)
    except SpecError as err:
        raise SweepError(str(err)) from None
    return data if is_sweep_data(data) else None


def _cli_overrides(data: dict[str, Any], seeds: int | None, policy: str | None, mode: str | None,
                   backend: str | None) -> dict[str, Any]:
    # A command-line choice replaces the file's at every level (a study's own seeds/policies too).
    data = dict(data)
    studies = [dict(s) for s in data["studies"]] if isinstance(data.get("studies"), list) else None
    for key, value in (("seeds", seeds), ("policies", _policies(policy))):
        if value is not None:
            data[key] = value
            for s in studies or []:
                s.pop(key, None)
    if studies is not None:
        data["studies"] = studies
    if mode is not None:
        data["mode"] = mode
    if backend is not None:
        data["backend"] = backend
    return data


def _policies(option: str | None) -> Any:
    if option is None or option == "all":
        return option
    return option.split(",")


def _load(target: str, vary: list[str], ratio: str | None, sets: list[str], seeds: int | None, policy: str | None,
          mode: str | None, backend: str | None) -> tuple[Any, Path, str]:
    """(sweep, base folder for relative spec paths, origin for messages)."""
    from orchestrator.specs import resolve_spec
    from orchestrator.sweep.spec import SweepError, inline_sweep, parse_sweep
    from orchestrator.sweeps import resolve_sweep

    path = Path(target) if Path(target).is_file() else resolve_sweep(target)
    data = _sweep_data(path) if path is not None else None
    if data is not None:
        if vary or ratio or sets:
            raise SweepError(f"{target}: --vary, --ratio and --set are for the inline form (pamdi sweep SPEC ...)")
        assert path is not None
        return parse_sweep(_cli_overrides(data, seeds, policy, mode, backend), str(path)), path.parent, str(path)
    try:
        resolve_spec(target)
    except FileNotFoundError:
        from orchestrator.sweeps import shipped_sweeps

        raise SweepError(f"{target}: no such sweep or spec file, and no shipped sweep or spec of that name "
                         f"(shipped sweeps: {', '.join(shipped_sweeps())})") from None
    sweep = inline_sweep(target, vary=vary, ratios=ratio, sets=sets, seeds=seeds, policies=policy,
                         mode=mode or "sim", backend=backend)
    return sweep, Path("."), "pamdi sweep"


def _list() -> None:
    from rich.console import Console
    from rich.table import Table

    from orchestrator.sweep import SweepError, expand, load_sweep
    from orchestrator.sweeps import SWEEPS_DIR, shipped_sweeps

    table = Table(title=f"shipped sweeps ({SWEEPS_DIR})")
    for col in ("name", "mode", "cells", "description"):
        table.add_column(col, justify="right" if col == "cells" else "left")
    for name in shipped_sweeps():
        path = SWEEPS_DIR / f"{name}.yaml"
        try:
            sw = load_sweep(path)
            table.add_row(name, sw.mode, str(len(expand(sw, path.parent, str(path)))), sw.description)
        except SweepError as err:
            table.add_row(name, "?", "?", f"[red]{err}[/red]")
    Console().print(table)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}%"


def _print_headline(sweep: Any, result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from orchestrator.sweep.report import where_up_to

    if not any(result["studies"].values()):
        return  # no PA-MDI or no baseline in the sweep: nothing to compare

    table = Table(title="largest TS mean reduction of PA-MDI against each baseline (seed-averaged points)")
    for col in ("study", "baseline", "up to", "paper", "at"):
        table.add_column(col, justify="right" if col in ("up to", "paper") else "left", overflow="fold")
    by_name = {s.name: s for s in sweep.studies}
    for study, reds in result["studies"].items():
        for base, r in reds.items():
            paper = by_name[study].paper.get(base)
            table.add_row(study, base, _pct(r["up_to"]), _pct(paper), where_up_to(r))
    Console().print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        target: str = typer.Argument(..., help="sweep file, shipped sweep name, `list`, or a spec (inline form)"),
        vary: list[str] = typer.Option([], "--vary", help="inline: axis PATH=V1,V2,... (repeatable)"),
        ratio: str = typer.Option(None, "--ratio", help="inline: R1,R2,...: TS priority = R x NTS priority"),
        sets: list[str] = typer.Option([], "--set", help="inline: axis-free override PATH=VALUE (repeatable)"),
        seeds: int = typer.Option(None, "--seeds", min=1, help="seeds per point (the spec's seed + 0, 1, ...)"),
        policy: str = typer.Option(None, "--policy", "-p", help="policy, comma-separated list, or all"),
        mode: SweepMode = typer.Option(None, "--mode", help="simulate the cells (default) or emulate them"),
        backend: SweepBackend = typer.Option(None, "--backend", "-b", help="emulate: where (default netns)"),
        scheduler: str = typer.Option(None, "--scheduler", help="an existing Dask cluster, tcp://HOST:PORT"),
        workers: int = typer.Option(None, "--workers", min=1, help="local cluster size (default: one per core)"),
        out: Path = typer.Option(None, "--out", help="output folder (default results/sweeps/<name>-<hash>)"),
        as_json: bool = typer.Option(False, "--json", help="print a JSON summary (no progress bar)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate and count the cells; run nothing"),
    ) -> None:
        """Run a parameter sweep (axes x policies x seeds) on Dask, caching every cell."""
        from orchestrator.sweep import EngineError, SweepError, default_out, expand, finish, sweep_engine

        if target == "list" and not Path(target).is_file():
            _list()
            return
        if scheduler is not None and workers is not None:
            raise fail("--workers sizes the local cluster; with --scheduler the cluster has its own workers")
        try:
            sw, base_dir, origin = _load(target, vary, ratio, sets, seeds, policy, mode, backend)
            cells = expand(sw, base_dir, origin)
        except SweepError as err:
            raise fail(str(err)) from None
        out_dir = out or default_out(sw, cells)
        if dry_run:
            typer.echo(f"{sw.name}: {len(cells)} cells ({len({c.key for c in cells})} distinct runs), "
                       f"{len(sw.studies)} studies; output {out_dir}")
            return
        echo = (lambda msg: typer.echo(msg, err=True)) if as_json else typer.echo
        echo(f"{sw.name}: {len(cells)} cells, mode {sw.mode}; output {out_dir}")
        try:
            with sweep_engine(cells, out_dir, scheduler=scheduler, workers=workers) as engine:
                stats = engine.run(progress=not as_json, echo=echo)
                result = finish(cells, out_dir, sw, stats, engine.map)  # figures drawn on the same workers
        except EngineError as err:
            raise fail(f"sweep: {err}", code=1) from None
        except KeyboardInterrupt:
            typer.echo(f"interrupted: finished cells are kept in {out_dir}/cells; run the same command again "
                       "to compute only the rest", err=True)
            raise typer.Exit(130) from None
        not_ok = int(result["frame"].drop_duplicates("cell")["status"].ne("ok").sum())
        if as_json:
            print_json({"out": str(out_dir), "cells": stats.cells, "runs": stats.runs, "computed": stats.computed,
                        "cached": stats.cached, "failed": not_ok, "wall_s": round(stats.wall_s, 3),
                        "table": str(result["table"]), "report": str(result["report"]),
                        "figures": [str(f) for f in result["figures"]], "reductions": result["studies"]})
        else:
            _print_headline(sw, result)
            typer.echo(f"{stats.computed} computed, {stats.cached} cached, {not_ok} not ok; "
                       f"{stats.wall_s:.1f} s on the engine")
            typer.echo(f"table: {result['table']}\nreport: {result['report']}\nfigures: {out_dir / 'figures'}")
        if not_ok:
            raise fail(f"sweep: {not_ok} cell(s) failed (errors in {result['report']}); rerun to retry them", code=1)
