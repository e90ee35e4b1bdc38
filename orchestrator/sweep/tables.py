"""The sweep's tables: ``cells.parquet`` (one row per cell and source) and seed-averaged statistics.

Rows follow the expansion order (study, axis point in the order of the axes' values, seed, policy,
source in spec order), which depends only on the sweep: the same sweep gives the same table
whichever engine computed it. No timing column enters the table (timings live in the cell files).
"TS" is the source with the highest priority in a cell (the first such in spec order), every other
source "NTS".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.sweep.cache import MISSING, OK, CellCache
from orchestrator.sweep.cells import Cell

TAIL_COLUMNS = ("policy", "source", "role", "priority", "seed", "mode", "backend", "completed", "failed", "mean_s",
                "p50_s", "p95_s", "weighted_mean_s", "status", "error", "cell")
_METRICS = ("mean_s", "p50_s", "p95_s")


def axis_columns(cells: Sequence[Cell]) -> list[str]:
    """Every axis column, in order of first appearance (studies may have different axes)."""
    seen: dict[str, None] = {}
    for c in cells:
        for name, _ in c.point:
            seen.setdefault(name, None)
    return list(seen)


def _role(cell: Cell, source: str) -> str:
    top = max(p for _, p in cell.sources)
    first = next(n for n, p in cell.sources if p == top)
    return "TS" if source == first else "NTS"


def _column(values: list[Any]) -> pd.Series:
    """One dtype per axis column, so that Parquet can store it: numbers stay numbers, anything mixed
    (e.g. ``partitions: [2, blocks]``) becomes text; cells of other studies are null."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="boolean")
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        if all(isinstance(v, int) for v in present) and len(present) == len(values):
            return pd.Series(values, dtype="int64")
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.Series([None if v is None else (v if isinstance(v, str) else _text(v)) for v in values], dtype="object")


def _text(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True)


def build_table(cells: Sequence[Cell], out_dir: Path) -> pd.DataFrame:
    cache = CellCache(out_dir)
    axes = axis_columns(cells)
    rows: list[dict[str, Any]] = []
    records: dict[str, dict[str, Any] | None] = {}
    for c in cells:
        if c.key not in records:
            records[c.key] = cache.get(c.key)
        rec = records[c.key]
        status = rec["status"] if rec else MISSING
        run = rec.get("run") if rec and status == OK else None
        point = dict(c.point)
        for name, prio in c.sources:
            s = (run or {}).get("sources", {}).get(name, {})
            rows.append({"study": c.study, **{a: point.get(a) for a in axes}, "policy": c.policy, "source": name,
                         "role": _role(c, name), "priority": float(prio), "seed": c.seed, "mode": c.mode,
                         "backend": c.backend, "completed": s.get("completed"), "failed": s.get("failed"),
                         **{m: s.get(m) for m in _METRICS},
                         "weighted_mean_s": (run or {}).get("weighted_mean_s"), "status": status,
                         "error": rec.get("error") if rec else None, "cell": c.key})
    cols: dict[str, pd.Series] = {"study": pd.Series([r["study"] for r in rows], dtype="object")}
    for a in axes:
        cols[a] = _column([r[a] for r in rows])
    for k in TAIL_COLUMNS:
        values = [r[k] for r in rows]
        if k in ("completed", "failed"):
            cols[k] = pd.Series(values, dtype="Int64")
        elif k in ("priority", "weighted_mean_s", *_METRICS):
            cols[k] = pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
        elif k == "seed":
            cols[k] = pd.Series(values, dtype="int64")
        else:
            cols[k] = pd.Series(values, dtype="object")
    return pd.DataFrame(cols)


def write_table(df: pd.DataFrame, out_dir: Path) -> Path:
    path = Path(out_dir) / "cells.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def study_axes(df: pd.DataFrame, study: str) -> list[str]:
    """The axis columns a study uses (the others are null in its rows)."""
    sub = df[df["study"] == study]
    fixed = {"study", *TAIL_COLUMNS}
    return [c for c in df.columns if c not in fixed and sub[c].notna().any()]


def seed_stats(df: pd.DataFrame, study: str, metric: str = "mean_s") -> pd.DataFrame:
    """Per (point, policy, source): mean of ``metric`` over the seeds that completed, its standard
    deviation, the seed count and the 95% confidence half-width (Student t; none for one seed)."""
    from scipy.special import stdtrit  # Student t quantiles; scipy.stats would add a second to every report

    axes = study_axes(df, study)
    sub = df[(df["study"] == study)]
    keys = [*axes, "policy", "source", "role"]
    out = []
    for group, g in sub.groupby(keys, sort=False, dropna=False):
        vals = g.loc[g["status"] == OK, metric].dropna().to_numpy(dtype=float)
        n = int(vals.size)
        mean = float(vals.mean()) if n else math.nan
        sd = float(vals.std(ddof=1)) if n > 1 else math.nan
        ci = float(stdtrit(n - 1, 0.975) * sd / math.sqrt(n)) if n > 1 else math.nan
        out.append({**dict(zip(keys, group, strict=True)), "priority": float(g["priority"].iloc[0]), "n": n,
                    "mean": mean, "sd": sd, "ci95": ci,
                    "weighted_mean": float(g.loc[g["status"] == OK, "weighted_mean_s"].mean())})
    return pd.DataFrame(out)
