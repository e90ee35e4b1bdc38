"""``report.md`` of a sweep, and the headline numbers: PA-MDI's largest TS mean reductions.

A reduction against a baseline is ``(baseline - pa-mdi) / baseline`` of the TS source's mean
inference time, both averaged over seeds first, at each axis point; "up to" is the largest over the
points, reported with where it occurs. Beside it: the lowest, the paper's own number when the sweep
file gives it, and, per axis, the reduction at each value averaged over the other axes (which
unknowns move the number). Tables are written by hand (pandas' ``to_markdown`` needs tabulate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.sweep.cache import OK
from orchestrator.sweep.tables import seed_stats, study_axes

TARGET = "pa-mdi"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:g}"
    return str(v)


def _plain(v: Any) -> Any:
    """numpy scalars (from pandas indexes) as Python numbers, for JSON and printing."""
    return v.item() if hasattr(v, "item") else v


def _where(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in point.items()) or "(the base spec)"


def where_up_to(r: dict[str, Any]) -> str:
    """Where the largest reduction occurs, with every point that ties with it."""
    if r.get("ties", 1) <= 1:
        return _where(r["at"])
    text = ", ".join(f"{a}={'/'.join(_fmt(v) for v in vs)}" for a, vs in r["tied_at"].items())
    return f"{text} ({r['ties']} points tie)"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return _fmt(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1f}%"


def reductions(df: pd.DataFrame, study: str) -> dict[str, dict[str, Any]]:
    """Per baseline: up to / lowest TS reduction of PA-MDI (%, seed-averaged points) and where."""
    stats = seed_stats(df, study)
    axes = study_axes(df, study)
    ts = stats[stats["role"] == "TS"]
    if TARGET not in set(ts["policy"]):
        return {}
    key = axes or ["role"]
    mine = ts[ts["policy"] == TARGET].set_index(key)["mean"]
    out: dict[str, dict[str, Any]] = {}
    for base in dict.fromkeys(ts["policy"]):
        if base == TARGET:
            continue
        theirs = ts[ts["policy"] == base].set_index(key)["mean"]
        red = (100.0 * (theirs - mine) / theirs).dropna()
        if red.empty:
            continue

        def point(idx: Any) -> dict[str, Any]:
            if not axes:
                return {}
            values = idx if isinstance(idx, tuple) else (idx,)
            return {a: _plain(v) for a, v in zip(axes, values, strict=True)}

        by_axis = {}
        frame = red.reset_index(name="reduction") if axes else None
        for a in axes:
            assert frame is not None
            by_axis[a] = [(_plain(v), float(g["reduction"].mean())) for v, g in frame.groupby(a, sort=False)]
        # Points within 0.05 points of a percent of the largest tie with it (priority ratios above 1 often
        # give PA-MDI the very same decisions): all of them are named, not just the first.
        tied = [point(i) for i in red.index[red >= red.max() - 0.05]]
        out[base] = {"up_to": float(red.max()), "at": point(red.idxmax()), "ties": len(tied),
                     "tied_at": {a: list(dict.fromkeys(t[a] for t in tied)) for a in axes},
                     "lowest": float(red.min()), "lowest_at": point(red.idxmin()), "by_axis": by_axis}
    return out


def _means_table(df: pd.DataFrame, study: str) -> str:
    stats = seed_stats(df, study)
    axes = study_axes(df, study)
    rows = []
    for group, g in stats.groupby([*axes, "policy"], sort=False, dropna=False):
        values = group if isinstance(group, tuple) else (group,)

        def ms(role: str, g: pd.DataFrame = g) -> str:
            r = g[g["role"] == role]
            if r.empty or r["mean"].isna().all():
                return "-"
            m, ci = float(r["mean"].mean()) * 1e3, float(r["ci95"].mean()) * 1e3
            return f"{m:.1f}" if math.isnan(ci) else f"{m:.1f} ± {ci:.1f}"

        w = float(g["weighted_mean"].iloc[0]) * 1e3
        rows.append([*values, ms("TS"), ms("NTS"), "-" if math.isnan(w) else f"{w:.1f}"])
    return md_table([*axes, "policy", "TS mean (ms, ± 95% CI)", "NTS mean (ms, ± 95% CI)", "weighted mean (ms)"], rows)


def write_report(df: pd.DataFrame, out_dir: Path, sweep: Any, stats: Any, figures: Sequence[Path]) -> dict[str, Any]:
    """Write ``report.md``; return ``{"report": path, "studies": {study: reductions}}``."""
    from pamdi_node import __version__

    out_dir = Path(out_dir)
    lines = [f"# Sweep {sweep.name}", ""]
    if sweep.description:
        lines += [sweep.description, ""]
    n_failed = int(df.drop_duplicates("cell")["status"].ne(OK).sum())
    lines += [f"Mode {sweep.mode}, backend {sweep.backend_name}, pamdi {__version__}. {stats.cells} cells "
              f"({stats.runs} distinct runs: {stats.computed} computed now, {stats.cached} from the cache; "
              f"{n_failed} not ok). Table: `cells.parquet` (one row per cell and source).", ""]
    by_study = {s.name: s for s in sweep.studies}
    headline: dict[str, Any] = {study: reductions(df, study) for study in dict.fromkeys(df["study"])}
    papered = [(st, b) for st, red in headline.items() for b in by_study[st].paper if b in red]
    if papered:
        lines += ["## Beside the paper", "", "Largest TS mean reduction of PA-MDI (this sweep / the paper's):", ""]
        rows = [[st, f"vs {b}", _pct(headline[st][b]["up_to"]), _pct(by_study[st].paper[b]),
                 where_up_to(headline[st][b])] for st, b in papered]
        lines += [md_table(["study", "baseline", "this sweep", "paper", "at"], rows), ""]
    for study, red in headline.items():
        spec = by_study[study]
        lines += [f"## {study} (spec `{spec.spec}`)", ""]
        axes = study_axes(df, study)
        if axes:
            sub = df[df["study"] == study]
            values = {a: ", ".join(_fmt(_plain(v)) for v in dict.fromkeys(sub[a])) for a in axes}
            lines += ["Axes: " + "; ".join(f"`{a}` = {v}" for a, v in values.items()), ""]
        if red:
            lines += ["### Largest TS mean reductions of PA-MDI", ""]
            rows = [[f"vs {b}", _pct(r["up_to"]), where_up_to(r),
                     _pct(spec.paper[b]) if b in spec.paper else "-", _pct(r["lowest"]), _where(r["lowest_at"])]
                    for b, r in red.items()]
            lines += [md_table(["baseline", "up to", "at", "paper", "lowest", "at"], rows), ""]
            if axes:
                lines += ["How each axis moves the reduction (mean over the other axes' points):", ""]
                for a in axes:
                    parts = [f"vs {b}: " + ", ".join(f"{_fmt(v)} → {_pct(x)}" for v, x in r["by_axis"][a])
                             for b, r in red.items()]
                    lines.append(f"- `{a}`: " + "; ".join(parts))
                lines.append("")
        lines += ["### Seed-averaged means", "", _means_table(df, study), ""]
        mine = [f for f in figures if f.suffix == ".png" and f.name.startswith(f"{study}-")]
        if mine:
            lines += ["### Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in mine] + [""]
    failed = df[df["status"] != OK].drop_duplicates("cell")
    if not failed.empty:
        lines += ["## Cells not ok", ""]
        rows = [[r.study, r.policy, r.seed, r.status, r.error or "-", r.cell] for r in failed.head(50).itertuples()]
        lines += [md_table(["study", "policy", "seed", "status", "error", "cell"], rows), ""]
        if len(failed) > 50:
            lines += [f"... and {len(failed) - 50} more (see `cells.parquet`).", ""]
    if sweep.notes:
        lines += ["## Notes", "", sweep.notes.strip(), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return {"report": path, "studies": headline}
