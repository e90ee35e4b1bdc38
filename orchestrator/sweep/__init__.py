"""Parameter sweeps: many cells (axis point x policy x seed) of a base spec, run on Dask, cached.

``spec.py`` reads sweep files, ``cells.py`` expands them into validated, content-addressed cells,
``engine.py`` runs the missing ones (``worker.py`` is what a worker executes, ``cache.py`` the cell
files), ``tables.py`` writes ``cells.parquet``, ``figures.py`` the figures, ``report.py`` ``report.md``.
``pamdi sweep`` (``orchestrator/cli/sweep_cmd.py``) drives them in that order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.sweep.cells import Cell, expand, sweep_hash
from orchestrator.sweep.engine import Engine, EngineError, EngineStats, run_cells, sweep_engine
from orchestrator.sweep.spec import SweepError, SweepFile, load_sweep, parse_sweep

__all__ = ["Cell", "Engine", "EngineError", "EngineStats", "SweepError", "SweepFile", "default_out", "expand", "finish",
           "load_sweep", "parse_sweep", "run_cells", "run_sweep", "sweep_engine"]


def default_out(sweep: SweepFile, cells: list[Cell]) -> Path:
    """``results/sweeps/<name>-<hash of the cell keys>``: the same sweep finds its own cache again."""
    return Path("results") / "sweeps" / f"{sweep.name}-{sweep_hash(cells)}"


def finish(cells: list[Cell], out_dir: Path, sweep: SweepFile, stats: EngineStats,
           mapper: Callable[[Callable[[Any], Any], list[Any]], list[Any]] | None = None) -> dict[str, Any]:
    """Table, figures and report of whatever cells are in the cache (missing ones show as such);
    ``mapper`` draws the figures (``Engine.map``: on the sweep's workers)."""
    from orchestrator.sweep.figures import write_figures
    from orchestrator.sweep.report import write_report
    from orchestrator.sweep.tables import build_table, write_table

    df = build_table(cells, out_dir)
    table = write_table(df, out_dir)
    policies = {s.name: list(s.policies or sweep.policies) for s in sweep.studies}
    figures = write_figures(df, out_dir, policies, mapper)
    rep = write_report(df, out_dir, sweep, stats, figures)
    return {"table": table, "frame": df, "figures": figures, **rep}


def run_sweep(sweep: SweepFile, base_dir: Path, out_dir: Path | None = None, *, scheduler: str | None = None,
              workers: int | None = None, progress: bool = False, echo: Callable[[str], None] = print,
              origin: str = "<sweep>") -> tuple[EngineStats, dict[str, Any]]:
    """Expand, run what is missing, write the outputs: the whole of ``pamdi sweep`` as a function."""
    cells = expand(sweep, base_dir, origin)
    out = out_dir or default_out(sweep, cells)
    with sweep_engine(cells, out, scheduler=scheduler, workers=workers) as engine:
        stats = engine.run(progress, echo)
        return stats, {"out": out, **finish(cells, out, sweep, stats, engine.map)}
