"""Per-task records and the summary JSON shared by ``pamdi simulate`` and ``pamdi emulate``.

Shape (one entry per policy run)::

    {"runs": [{"policy": "pa-mdi",
               "sources": {"ts": {"priority": 10, "samples": 100, "completed": 100, "failed": 0,
                                  "mean_s": ..., "p50_s": ..., "p95_s": ..., "max_s": ...,
                                  "failures": {"reason": count}}, ...},
               "weighted_mean_s": ...}]}

``weighted_mean_s`` is the priority-weighted mean inference time Σ_m γ_m·mean_m / Σ_m γ_m over the
sources that completed at least one task (the objective the allocator bounds). Latency is measured
from a task's birth at its source to its result arriving back at the source. Failed tasks are
counted, never averaged in, and never dropped: every record has a status and, if failed, a reason.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pamdi_node.records import COMPLETED, FAILED, TaskRecord

# The record types live with the agents that emit them (``pamdi_node/records.py``); re-exported
# here, where the simulator, the runner and the sweeps have always found them.
__all__ = ["COMPLETED", "FAILED", "TaskRecord", "summarize", "summarize_run", "summarize_source"]


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def summarize_source(records: Sequence[TaskRecord], priority: float) -> dict[str, Any]:
    lat = np.array([r.latency_s for r in records if r.status == COMPLETED and r.latency_s is not None], dtype=float)
    failed = [r for r in records if r.status != COMPLETED]
    return {
        "priority": priority,
        "samples": len(records),
        "completed": int(lat.size),
        "failed": len(failed),
        "mean_s": float(lat.mean()) if lat.size else None,
        "p50_s": _pct(lat, 50),
        "p95_s": _pct(lat, 95),
        "max_s": float(lat.max()) if lat.size else None,
        "failures": dict(Counter(r.reason or "unknown" for r in failed)),
    }


def weighted_mean(sources: Mapping[str, Mapping[str, Any]]) -> float | None:
    num = den = 0.0
    for s in sources.values():
        if s["mean_s"] is not None:
            num += s["priority"] * s["mean_s"]
            den += s["priority"]
    return num / den if den > 0 else None


def summarize_run(
    policy: str, records: Iterable[TaskRecord], priorities: Mapping[str, float], **extra: Any
) -> dict[str, Any]:
    """One ``runs`` entry. Every source in ``priorities`` appears, even with no records."""
    by_source: dict[str, list[TaskRecord]] = {name: [] for name in priorities}
    for r in records:
        if r.source not in by_source:
            raise ValueError(f"record {r.task_id!r} names unknown source {r.source!r}")
        by_source[r.source].append(r)
    sources = {name: summarize_source(recs, float(priorities[name])) for name, recs in by_source.items()}
    return {"policy": policy, "sources": sources, "weighted_mean_s": weighted_mean(sources), **extra}


def summarize(
    runs: Iterable[tuple[str, Iterable[TaskRecord], Mapping[str, float]]],
) -> dict[str, Any]:
    """``{"runs": [...]}`` from ``(policy, records, priorities)`` triples."""
    return {"runs": [summarize_run(p, recs, prios) for p, recs, prios in runs]}


def reduction_pct(new: float | None, old: float | None) -> float | None:
    """How much smaller ``new`` is than ``old``, in percent (positive = better)."""
    if new is None or old is None or old <= 0 or not math.isfinite(old):
        return None
    return 100.0 * (old - new) / old


def compare(summary: Mapping[str, Any], policy: str = "pa-mdi") -> dict[str, dict[str, float | None]]:
    """Per source: the mean-time reduction of ``policy`` against every other policy in the summary.

    Negative values are costs (e.g. the NTS source getting slower under PA-MDI).
    """
    runs = {r["policy"]: r for r in summary["runs"]}
    if policy not in runs:
        return {}
    mine = runs[policy]["sources"]
    out: dict[str, dict[str, float | None]] = {}
    for src, stats in mine.items():
        out[src] = {
            other: reduction_pct(stats["mean_s"], run["sources"].get(src, {}).get("mean_s"))
            for other, run in runs.items()
            if other != policy
        }
    return out
