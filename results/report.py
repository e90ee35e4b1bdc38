"""Plots and a Markdown summary from a run folder (``pamdi report RUN_DIR``).

- ``cdf.png`` (and ``cdf.svg``): empirical CDF of inference time over all of a source's tasks (failed
  ones count: a curve with failures stops below 1, its legend says how many), one panel per source,
  one line per policy.
- ``timeline.png`` (and ``.svg``): per-node timeline of compute spans (what ran where), one panel per
  policy on one shared time axis,
  coloured by source, with transfers drawn as thin bars under each node's row.
- ``means.png`` (and ``.svg``): each source's mean time per policy with its 95% confidence
  interval (batch means, below), one panel per source.
- ``report.md``: per-source mean (with its 95% confidence interval) / p50 / p95 per policy and the
  TS source's reduction against each baseline, plus the link statistics when the run has them.

A run's tasks are its repetitions, but not independent ones: a task that waits behind another
shares its delay, so a plain t-interval over tasks is too narrow. The interval is the batch-means
one of simulation output analysis: the completed tasks in arrival order are cut into
``CI_BATCHES`` consecutive batches whose means are close to independent, and the Student t
interval is taken over those (none with fewer than ``CI_MIN_PER_BATCH`` tasks per batch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

BASELINES = ("local", "ar-mdi", "ms-mdi", "ddi")
CI_BATCHES = 10
CI_MIN_PER_BATCH = 5


def batch_means_ci95(latency_in_arrival_order: ArrayLike) -> float | None:
    """Half-width of the 95% confidence interval of the mean by batch means (module doc); None
    when there are too few tasks for ``CI_BATCHES`` batches of ``CI_MIN_PER_BATCH``."""
    import math

    import numpy as np
    from scipy.special import stdtrit

    x = np.asarray(latency_in_arrival_order, dtype=float)
    k = min(CI_BATCHES, x.size // CI_MIN_PER_BATCH)
    if k < 2:
        return None
    per = x.size // k
    means = x[: k * per].reshape(k, per).mean(axis=1)
    return float(stdtrit(k - 1, 0.975) * means.std(ddof=1) / math.sqrt(k))


def load_tasks(run_dir: Path):  # type: ignore[no-untyped-def]
    import pandas as pd

    from results.trace import tables

    run_dir = Path(run_dir)
    path = run_dir / "tasks.parquet"
    if not path.exists():
        tables(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no tasks (neither tasks.parquet nor <policy>/tasks.jsonl)")
    df = pd.read_parquet(path)
    if "latency_s" not in df:  # tables written before the column was
        df["latency_s"] = df["done_s"] - df["born_s"]
    return df


def load_spans(run_dir: Path):  # type: ignore[no-untyped-def]
    import pandas as pd

    path = Path(run_dir) / "spans.parquet"
    return pd.read_parquet(path) if path.exists() else None


def source_table(df) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """One row per (policy, source): completed, failed, mean (and its 95% CI half-width), p50, p95
    in seconds."""
    rows = []
    for (policy, source), g in df.groupby(["policy", "source"], sort=False):
        done = g[g["status"] == "completed"]
        ok = (done.sort_values("born_s") if "born_s" in done else done)["latency_s"]
        rows.append({
            "policy": policy, "source": source, "completed": int(ok.count()),
            "failed": int((g["status"] != "completed").sum()),
            "mean_s": float(ok.mean()) if len(ok) else None,
            "ci95_s": batch_means_ci95(ok.to_numpy()),
            "p50_s": float(ok.quantile(0.5)) if len(ok) else None,
            "p95_s": float(ok.quantile(0.95)) if len(ok) else None,
        })
    return rows


def reductions(rows: list[dict[str, Any]], source: str, policy: str = "pa-mdi") -> dict[str, float]:
    """Percent reduction of ``source``'s mean time under ``policy`` against each baseline present."""
    means = {r["policy"]: r["mean_s"] for r in rows if r["source"] == source and r["mean_s"] is not None}
    if policy not in means:
        return {}
    return {b: 100.0 * (means[b] - means[policy]) / means[b] for b in BASELINES if b in means and means[b] > 0}


def ts_source(run_dir: Path, sources: list[str]) -> str | None:
    """The highest-priority source (from summary.json's priorities, else a source named 'ts')."""
    try:
        prios = json.loads((Path(run_dir) / "summary.json").read_text()).get("priorities", {})
    except (OSError, ValueError):
        prios = {}
    if prios:
        return max(prios, key=lambda s: prios[s])
    return "ts" if "ts" in sources else (sources[0] if sources else None)


def cdf_curves(df) -> dict[tuple[str, str], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Per (source, policy): the completed tasks' sorted times (ms) and the CDF over ALL the source's
    tasks: a failed task never completes, so a curve with failures ends at completed/total < 1 (as
    a paper's figure must show it), plus the failed and total counts."""
    import numpy as np

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (src, policy), g in df.groupby(["source", "policy"], sort=False):
        done = g[g["status"] == "completed"]
        x = np.sort(done["latency_s"].to_numpy() * 1000)
        out[(str(src), str(policy))] = {"x_ms": x, "y": np.arange(1, len(x) + 1) / len(g),
                                        "failed": len(g) - len(done), "total": len(g)}
    return out


def plot_cdf(df, out: Path) -> Path:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sources = list(dict.fromkeys(df["source"]))
    curves = cdf_curves(df)
    fig, axes = plt.subplots(1, len(sources), figsize=(5.2 * len(sources), 4), squeeze=False)
    for ax, src in zip(axes[0], sources, strict=True):
        for (s, policy), c in curves.items():
            if s != src:
                continue
            x = c["x_ms"]
            label = f"{policy} (mean {np.mean(x):.0f}" if len(x) else f"{policy} (none completed"
            label += f", {c['failed']} of {c['total']} failed)" if c["failed"] else ")"
            if len(x):
                ax.step(x, c["y"], where="post", label=label)
            else:
                ax.plot([], [], label=label)
        ax.set_title(f"source {src}")
        ax.set_xlabel("inference time (ms)")
        ax.set_ylabel("fraction of the source's tasks")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Inference-time CDF per source and policy (failed tasks count: curves stop below 1)")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out


def plot_means(rows: list[dict[str, Any]], out: Path) -> Path:
    """Each source's mean per policy with its 95% confidence interval (batch means), a panel per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(r["source"] for r in rows))
    fig, axes = plt.subplots(1, len(sources), figsize=(4.2 * len(sources), 3.6), squeeze=False)
    for ax, src in zip(axes[0], sources, strict=True):
        mine = [r for r in rows if r["source"] == src]
        names = [r["policy"] for r in mine]
        means = [(r["mean_s"] or 0.0) * 1000 for r in mine]
        errs = [(r.get("ci95_s") or 0.0) * 1000 for r in mine]
        ax.bar(names, means, yerr=errs, capsize=4, color="#4c72b0", alpha=0.85)
        for i, r in enumerate(mine):
            if r["mean_s"] is None:
                ax.annotate("none completed", (i, 0), ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_title(f"source {src}")
        ax.set_ylabel("mean inference time (ms)")
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Mean inference time per source, 95% confidence interval (batch means over the run's tasks)",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out


def _save(fig, out: Path) -> None:  # type: ignore[no-untyped-def]
    """PNG for a look, SVG beside it for a paper (same stem); the SVG's ids are salted by the stem
    so that the same figure gives the same bytes."""
    import matplotlib

    fig.savefig(out, dpi=110)
    with matplotlib.rc_context({"svg.hashsalt": out.stem}):
        fig.savefig(out.with_suffix(".svg"), metadata={"Date": None})


def plot_timeline(spans, out: Path, max_policies: int = 5) -> Path | None:  # type: ignore[no-untyped-def]
    if spans is None or spans.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(spans["policy"]))[:max_policies]
    nodes = sorted(set(spans["node"]))
    sources = sorted(set(spans["source"].dropna()))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(sources)}
    # One time axis for every policy (sharex), so that their panels compare at a glance.
    fig, axes = plt.subplots(len(policies), 1, figsize=(11, 1.0 + 0.55 * len(nodes) * len(policies)),
                             squeeze=False, sharex=True)
    for ax, policy in zip(axes[:, 0], policies, strict=True):
        sp = spans[spans["policy"] == policy]
        t0 = sp["start"].min()
        for y, node in enumerate(nodes):
            for kind, height, offset in (("compute", 0.6, 0.0), ("transfer", 0.15, -0.4)):
                part = sp[(sp["node"] == node) & (sp["kind"] == kind)]
                for src, g in part.groupby("source"):
                    ax.broken_barh(list(zip(g["start"] - t0, g["end"] - g["start"], strict=True)),
                                   (y - height / 2 + offset, height), facecolors=colours.get(src, "grey"),
                                   alpha=0.9 if kind == "compute" else 0.5)
        ax.set_yticks(range(len(nodes)), nodes)
        ax.set_ylim(-0.8, len(nodes) - 0.4)
        ax.set_title(f"{policy}: compute (thick) and incoming transfers (thin) per node", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("time since the policy's first span (s)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[s]) for s in sources]
    fig.legend(handles, [f"source {s}" for s in sources], loc="upper right", fontsize=8)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


def failure_reasons(df) -> list[tuple[tuple[str, str, str], int]]:  # type: ignore[no-untyped-def]
    """((policy, source, reason), count) of every failed task, most frequent first."""
    failed = df[df["status"] != "completed"]
    reasons = failed["reason"] if "reason" in failed else [""] * len(failed)
    counts: dict[tuple[str, str, str], int] = {}
    for policy, source, why in zip(failed["policy"], failed["source"], reasons, strict=True):
        text = " ".join(why.split())[:200] if isinstance(why, str) else ""
        key = (str(policy), str(source), text or "(no reason recorded)")
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def markdown(run_dir: Path, rows: list[dict[str, Any]], ts: str | None, images: list[Path],
             failures: list[tuple[tuple[str, str, str], int]] | None = None) -> str:
    run_dir = Path(run_dir)
    lines = [f"# Run {run_dir.name}", ""]
    try:
        man = json.loads((run_dir / "manifest.json").read_text())
        lines += [f"- spec: `{man['spec'].get('name')}`, backend `{man.get('backend')}`, seed {man.get('seed')}",
                  f"- git commit: `{man.get('git_commit')}`; host: {man.get('host', {}).get('cpu_model', '?')} "
                  f"({man.get('host', {}).get('cpus')} CPUs)", ""]
    except (OSError, ValueError, KeyError):
        pass
    lines += ["## Inference time per source (ms)", "",
              "| policy | source | done | failed | mean | 95% CI | p50 | p95 |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ci = r.get("ci95_s")
        lines.append(f"| {r['policy']} | {r['source']} | {r['completed']} | {r['failed']} | {_ms(r['mean_s'])} | "
                     f"{'-' if ci is None else '±' + _ms(ci)} | {_ms(r['p50_s'])} | {_ms(r['p95_s'])} |")
    lines += ["", "95% CI: batch means over the run's tasks in arrival order (tasks that queue together are "
              "not independent, so a t-interval over single tasks would be too narrow)."]
    if ts is not None:
        red = reductions(rows, ts)
        if red:
            lines += ["", f"## PA-MDI against the baselines (source `{ts}`, mean time)", "",
                      "| baseline | reduction |", "| --- | ---: |"]
            lines += [f"| {b} | {v:+.1f}% |" for b, v in red.items()]
        others = [s for s in dict.fromkeys(r["source"] for r in rows) if s != ts]
        cost = {s: reductions(rows, s) for s in others}
        if any(cost.values()):
            lines += ["", "## What it costs the other sources (PA-MDI against each baseline, mean time; "
                      "negative = PA-MDI slower)", "",
                      "| source | " + " | ".join(BASELINES) + " |", "| --- |" + " ---: |" * len(BASELINES)]
            for s in others:
                lines.append(f"| {s} | " + " | ".join(f"{cost[s][b]:+.1f}%" if b in cost[s] else "-"
                                                      for b in BASELINES) + " |")
    lines += _fidelity_lines(run_dir)
    if failures:
        lines += ["", "## Failed tasks", "", "| policy | source | reason | tasks |", "| --- | --- | --- | ---: |"]
        lines += [f"| {p} | {s} | {why} | {n} |" for (p, s, why), n in failures]
    stats = run_dir / "links" / "tc_stats.parquet"
    if stats.exists():
        import pandas as pd

        st = pd.read_parquet(stats)
        if not st.empty and "bytes" in st:
            last = st.sort_values("t").groupby(["link", "src"]).tail(1)
            lines += ["", "## Links (tc counters at the end of the run)", "",
                      "| link | from | bytes | packets | drops | forwarder losses |",
                      "| --- | --- | ---: | ---: | ---: | ---: |"]
            for _, r in last.iterrows():
                lost = r.get("forwarder_lost", "-")
                lines.append(f"| {r['link']} | {r['src']} | {int(r['bytes'])} | {int(r['packets'])} | "
                             f"{int(r['drops'])} | {'-' if lost != lost else lost} |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(lines) + "\n"


def _fidelity_lines(run_dir: Path) -> list[str]:
    """How far each policy run can be trusted (``summary.json``): device time, stretch, overruns,
    the simulator's prediction beside each mean, and why a run is not faithful."""
    try:
        runs = json.loads((run_dir / "summary.json").read_text()).get("runs") or []
    except (OSError, ValueError):
        return []
    runs = [r for r in runs if isinstance(r, dict) and "device_time" in r]
    if not runs:
        return []
    lines = ["", "## Fidelity", "", "Simulated: the mean over beacon-phase draws of the same schedule, +/- their sd "
             "(near saturation a single draw's mean moves with the phases alone).", "",
             "| policy | device time | stretch | overran | simulated mean (ms) | faithful |",
             "| --- | --- | ---: | ---: | --- | --- |"]

    def sim_ms(v: dict[str, Any]) -> str:
        sd = v.get("sim_sd_s")
        return _ms(v.get("sim_mean_s")) + ("" if sd is None else f" +/- {_ms(sd)}")

    for r in runs:
        over = r.get("overrun_fraction")
        sim = ", ".join(f"{s} {sim_ms(v)}" for s, v in (r.get("sources") or {}).items()
                        if v.get("sim_mean_s") is not None) or "-"
        lines.append(f"| {r.get('policy')} | {r['device_time']} | {r.get('time_stretch', 1.0):g} | "
                     f"{'-' if over is None else f'{over:.1%}'} | {sim} | "
                     f"{'-' if r.get('faithful') is None else 'yes' if r['faithful'] else '**no**'} |")
    lines += [f"- {r.get('policy')}: not faithful: {why}" for r in runs for why in r.get("unfaithful", ())]
    return lines


def report(run_dir: Path) -> dict[str, Any]:
    """Regenerate tables, plots and report.md of a run folder; returns paths and the per-source rows."""
    from results.trace import tables

    run_dir = Path(run_dir)
    tables(run_dir)
    df = load_tasks(run_dir)
    rows = source_table(df)
    images = [plot_cdf(df, run_dir / "cdf.png"), plot_means(rows, run_dir / "means.png")]
    tl = plot_timeline(load_spans(run_dir), run_dir / "timeline.png")
    if tl is not None:
        images.append(tl)
    ts = ts_source(run_dir, list(dict.fromkeys(df["source"])))
    md = run_dir / "report.md"
    md.write_text(markdown(run_dir, rows, ts, images, failure_reasons(df)))
    return {"report": str(md), "images": [str(p) for p in images],
            "svg": [str(p.with_suffix(".svg")) for p in images], "sources": rows,
            "ts_source": ts, "ts_reduction_pct": reductions(rows, ts) if ts else {}}
