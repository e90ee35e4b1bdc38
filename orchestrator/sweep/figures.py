"""Sweep figures (matplotlib, no pyplot: figures are drawn off-screen and never touch global state).

Per study and axis: the seed-averaged mean inference time against the axis, one line per policy,
with 95% confidence intervals over seeds, TS and NTS panels side by side, one row of panels per
combination of the other axes. Per study: a bar chart of each policy's mean at every axis point.
Each is saved as PNG and SVG under ``figures/``. The y axis turns logarithmic when the policies'
means span more than 20x (Local is often an order of magnitude slower than the rest).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from orchestrator.sweep.tables import seed_stats, study_axes

ROLES = ("TS", "NTS")
LOG_SPAN = 20.0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _label(combo: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in combo)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _short(axis: str) -> str:
    """``sources.nts.interval_ms`` as ``nts.interval_ms``: tick labels need the item and the field only."""
    parts = axis.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else axis


def _yerr(mean_s: pd.Series, ci_s: pd.Series) -> list[list[float]]:
    # A few seeds give wide t intervals; below zero a time means nothing, so the lower bar stops at 0.
    mean, ci = list(mean_s * 1e3), list(ci_s.fillna(0.0) * 1e3)
    return [[min(c, m) if math.isfinite(m) else 0.0 for m, c in zip(mean, ci, strict=True)], ci]


def _scale(ax: Any, means: Sequence[float]) -> None:
    finite = [m for m in means if m > 0 and math.isfinite(m)]
    if finite and max(finite) / min(finite) > LOG_SPAN:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)


def _layout(fig: Figure, rows: int, cols: int, bottom: float = 0.6) -> None:
    """Fixed margins in inches (title, tick labels, axis labels). A tight or constrained layout measures
    every tick label, which took a third of a sweep's figure time (log axes have many)."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    left, right, top, gap_w, gap_h = 0.8, 0.2, 0.8, 0.8, 0.85
    aw = (w - left - right - (cols - 1) * gap_w) / cols
    ah = (h - top - bottom - (rows - 1) * gap_h) / rows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=gap_w / aw, hspace=gap_h / ah)


def _render(fig: Figure, stem: str, ext: str) -> tuple[str, bytes]:
    buf = io.BytesIO()
    # No timestamp, and SVG ids salted by the file name rather than at random: the same sweep gives
    # byte-identical figures, whichever process draws them.
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        fig.savefig(buf, format=ext, dpi=110, metadata={"Date": None} if ext == "svg" else None)
    return f"{stem}.{ext}", buf.getvalue()


def draw(job: tuple[Any, ...]) -> list[tuple[str, bytes]]:
    """One figure job (from ``figure_jobs``) drawn as (file name, bytes) for PNG and SVG: plain data
    in and out, so that a sweep's workers draw the figures and the client writes them."""
    kind, stats, axes, policies, title, stem = job
    if kind == "axis":
        axis, others = axes
        fig = axis_figure(stats, axis, others, policies, title)
    else:
        fig = bar_figure(stats, axes, policies, title)
    return [_render(fig, stem, ext) for ext in ("png", "svg")]


def _combos(stats: pd.DataFrame, axes: Sequence[str]) -> list[tuple[tuple[str, Any], ...]]:
    if not axes:
        return [()]
    seen: dict[tuple[Any, ...], None] = {}
    for row in stats[list(axes)].itertuples(index=False):
        seen.setdefault(tuple(row), None)
    return [tuple(zip(axes, c, strict=True)) for c in seen]


def _select(stats: pd.DataFrame, combo: Sequence[tuple[str, Any]]) -> pd.DataFrame:
    mask = pd.Series(True, index=stats.index)
    for k, v in combo:
        mask &= stats[k] == v
    return stats[mask]


def axis_figure(stats: pd.DataFrame, axis: str, others: Sequence[str], policies: Sequence[str], title: str) -> Figure:
    combos = _combos(stats, others)
    roles = [r for r in ROLES if (stats["role"] == r).any()]
    xs = list(dict.fromkeys(stats[axis]))
    numeric = _numeric(xs)
    fig = Figure(figsize=(5.2 * len(roles), 3.4 * len(combos) + 0.8))
    grid = fig.subplots(len(combos), len(roles), squeeze=False)
    for i, combo in enumerate(combos):
        sel = _select(stats, combo)
        for j, role in enumerate(roles):
            ax = grid[i][j]
            part = sel[sel["role"] == role]
            sources = list(dict.fromkeys(part["source"]))
            for policy in policies:
                for source in sources:
                    g = part[(part["policy"] == policy) & (part["source"] == source)]
                    if g.empty:
                        continue
                    x = list(g[axis]) if numeric else [xs.index(v) for v in g[axis]]
                    label = policy if len(sources) == 1 else f"{policy} ({source})"
                    ax.errorbar(x, g["mean"] * 1e3, yerr=_yerr(g["mean"], g["ci95"]), marker="o", capsize=3,
                                label=label)
            if not numeric:
                ax.set_xticks(range(len(xs)), [_fmt(v) for v in xs])
            elif min(xs) > 0 and max(xs) / min(xs) > LOG_SPAN:  # e.g. priority ratios 1, 10, 100
                ax.set_xscale("log")
                ax.set_xticks(xs, [_fmt(v) for v in xs])  # the swept values, not powers of ten
                ax.minorticks_off()
            _scale(ax, list(part["mean"] * 1e3))
            ax.set_title(f"{role}: {', '.join(sources)}" + (f" | {_label(combo)}" if combo else ""), fontsize=9)
            ax.set_xlabel(axis)
            ax.set_ylabel("mean inference time (ms)")
            ax.grid(alpha=0.3)
    grid[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _layout(fig, len(combos), len(roles))
    return fig


def bar_figure(stats: pd.DataFrame, axes: Sequence[str], policies: Sequence[str], title: str) -> Figure:
    combos = _combos(stats, axes)
    roles = [r for r in ROLES if (stats["role"] == r).any()]
    width = 0.8 / max(1, len(policies))
    # Wide enough for every bar to stay visible: about 0.12 inch per bar.
    fig = Figure(figsize=(max(5.2, 0.12 * len(combos) * len(policies) + 1.5) * len(roles), 4.4))
    grid = fig.subplots(1, len(roles), squeeze=False)
    for j, role in enumerate(roles):
        ax = grid[0][j]
        part = stats[stats["role"] == role]
        for k, policy in enumerate(policies):
            means, errs = [], []
            for combo in combos:
                g = _select(part, combo)
                g = g[g["policy"] == policy]
                # Several NTS sources: their mean (the line figures show each).
                means.append(float(g["mean"].mean()) if not g.empty else math.nan)
                errs.append(float(g["ci95"].fillna(0.0).mean()) if not g.empty else 0.0)
            ax.bar([i + (k - (len(policies) - 1) / 2) * width for i in range(len(combos))],
                   [m * 1e3 for m in means], width, yerr=_yerr(pd.Series(means), pd.Series(errs)), capsize=2,
                   label=policy)
        ax.set_xticks(range(len(combos)), [", ".join(_fmt(v) for _, v in c) or "base" for c in combos],
                      rotation=60 if len(combos) > 6 else 0, ha="right" if len(combos) > 6 else "center", fontsize=7)
        if axes:
            ax.set_xlabel("(" + ", ".join(_short(a) for a in axes) + ")")
        _scale(ax, list(part["mean"] * 1e3))
        ax.set_title(f"{role}: {', '.join(dict.fromkeys(part['source']))}", fontsize=9)
        ax.set_ylabel("mean inference time (ms)")
        ax.grid(alpha=0.3, axis="y")
    grid[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _layout(fig, 1, len(roles), bottom=1.1 if len(combos) > 6 else 0.6)
    return fig


def _digest(df: pd.DataFrame, policies_by_study: dict[str, Sequence[str]]) -> str:
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    h.update(json.dumps([list(df.columns), {k: list(v) for k, v in policies_by_study.items()}]).encode())
    return h.hexdigest()


def figure_jobs(df: pd.DataFrame, policies_by_study: dict[str, Sequence[str]]) -> list[tuple[Any, ...]]:
    jobs: list[tuple[Any, ...]] = []
    for study in dict.fromkeys(df["study"]):
        stats = seed_stats(df, study)
        if stats.empty or stats["mean"].isna().all():
            continue
        axes = study_axes(df, study)
        policies = list(policies_by_study[study])
        for axis in axes:
            others = [a for a in axes if a != axis]
            jobs.append(("axis", stats, (axis, others), policies, f"{study}: mean inference time vs {axis} (95% CI)",
                         f"{_safe(study)}-{_safe(axis)}"))
        jobs.append(("bars", stats, list(axes), policies, f"{study}: mean inference time per policy at each point",
                     f"{_safe(study)}-bars"))
    return jobs


def write_figures(df: pd.DataFrame, out_dir: Path, policies_by_study: dict[str, Sequence[str]],
                  mapper: Callable[[Callable[[Any], Any], list[Any]], list[Any]] | None = None) -> list[Path]:
    """Every figure of the sweep; returns the files (PNG and SVG of each). ``mapper(draw, jobs)`` draws
    them (the sweep's cluster: a figure is a few hundred ms of matplotlib), default here one by one.
    Figures depend only on the table: when it is unchanged since the figures were drawn (a cached
    rerun) they are kept, not drawn again, which is most of a cached rerun's time otherwise."""
    folder = Path(out_dir) / "figures"
    index = folder / "index.json"
    digest = _digest(df, policies_by_study)
    try:
        previous = json.loads(index.read_text())
        kept = [folder / name for name in previous["files"]]
        if previous["digest"] == digest and all(p.is_file() for p in kept):
            return kept
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no usable index: draw them
    jobs = figure_jobs(df, policies_by_study)
    drawn = mapper(draw, jobs) if mapper is not None else [draw(j) for j in jobs]
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for files in drawn:
        for name, data in files:
            (folder / name).write_bytes(data)
            written.append(folder / name)
    index.write_text(json.dumps({"digest": digest, "files": [p.name for p in written]}, indent=1) + "\n")
    return written
