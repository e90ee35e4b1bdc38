"""``pamdi demo``: the main job of ``make demo``.

Runs the paper-like 5-node experiment (``orchestrator/specs/paper-5node-resnet50-loaded.yaml``: 5
Xavier-NX nodes, full mesh at 20 Mbit/s, a TS and an NTS ResNet-50 source, Poisson arrivals) under
every policy on real agents, at that shipped spec's loads (TS every 200 ms, NTS every 150 ms: more
than the NTS node can carry alone, so the sources meet on the other nodes, which is where priorities
matter; at the fair spec's loads the policies hardly differ), with fewer samples (12 s of arrivals)
so that five policies fit in a few minutes: the ``netns`` backend when root
(namespaces, tc-shaped links), else the ``local`` backend (loopback, unshaped; said in the output).
Compute follows the ``profile`` device-time model (``pamdi_node/devicetime.py``): agents run the
real blocks at host speed and release each result when its modelled time on a Xavier NX has
passed, with time stretched only when this host needs it (``orchestrator/timescale.py``).

Beside every measured mean the simulator's prediction for the same arrival schedule (same seed,
the run's own profiles and measured runtime costs, ``orchestrator/predict.py``) is printed and
written into ``summary.json`` as ``sim_mean_s``, with each policy's overrun fraction and the
stretch factor. The demo then says which policy gives the TS source the lowest mean, and what it
costs the NTS source. Writes the run folder with its manifest, Parquet tables, plots and
``report.md``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from orchestrator.cli.choices import DemoBackend
from orchestrator.cli.common import fail, print_json, select_policies

DEMO_SPEC = "paper-5node-resnet50-loaded"
# Samples per source at the shipped spec's intervals: 12 s of arrivals per policy (Local and AR-MDI,
# which leave the NTS node alone with 111% of its capacity, take ~14 s to drain it). Fewer than 40 TS
# samples let one Poisson burst move the TS mean by more than the policies differ.
DEMO_SAMPLES = {"ts": 60, "nts": 80}
DEMO_TASK_TIMEOUT_S = 30.0


def demo_spec():  # type: ignore[no-untyped-def]
    from orchestrator.spec import load_spec
    from orchestrator.specs import resolve_spec

    spec = load_spec(resolve_spec(DEMO_SPEC))
    sources = tuple(s.model_copy(update={"samples": DEMO_SAMPLES[s.name]}) if s.name in DEMO_SAMPLES else s
                    for s in spec.sources)
    return spec.model_copy(update={
        "sources": sources, "name": "demo-5node-resnet50",
        "description": "5 Xavier NX, full mesh 20 Mbit/s, TS + NTS ResNet-50 at the shipped loaded spec's loads",
    })


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        backend: DemoBackend = typer.Option(None, "--backend", "-b", help="where the agents run (default: netns "
                                                                          "when root, else local)"),
        out: Path = typer.Option(None, "--out", help="run folder (default results/runs/<run id>)"),
        policy: str = typer.Option("all", "--policy", "-p", help="a policy or 'all'"),
        as_json: bool = typer.Option(False, "--json", help="print the run's summary JSON (progress goes to stderr)"),
    ) -> None:
        """Emulate the paper-like 5-node experiment under every policy; tables, plots and a report."""
        import logging

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from orchestrator.backends import get_backend
        from orchestrator.experiment import run_experiment
        from orchestrator.runner import RunError, RunOptions
        from orchestrator.simulator import SimulationError

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        console = Console(stderr=as_json)
        root = os.geteuid() == 0
        if backend is None:
            backend = "netns" if root else "local"
            if not root:
                console.print("[yellow]not root: using the local backend (loopback, links NOT shaped); "
                              "run as root for network namespaces with tc-shaped links[/yellow]")
        if backend not in ("netns", "local"):
            raise fail("--backend: netns or local")
        policies = select_policies(policy)
        spec = demo_spec()
        run_dir = out or Path("results") / "runs" / f"demo-{backend}-{time.strftime('%Y%m%d-%H%M%S')}"
        console.print(f"[bold]pamdi demo[/bold]: {spec.description}; backend [bold]{backend}[/bold]; "
                      f"policies {', '.join(policies)}")
        console.print("  arrivals: " + ", ".join(
            f"{s.name} {s.samples} tasks, {s.arrival} every {s.interval_s * 1000:g} ms" for s in spec.sources))
        t0 = time.time()
        be = get_backend(backend)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                      TimeElapsedColumn(), console=console) as progress:
            rows: dict[str, object] = {}

            def on_progress(name: str, finished: int, total: int) -> None:
                if name not in rows:
                    for other in rows.values():
                        progress.stop_task(other)  # type: ignore[arg-type]
                    rows[name] = progress.add_task(f"policy {name}", total=total)
                progress.update(rows[name], completed=finished, total=total)  # type: ignore[arg-type]

            opts = RunOptions(policies=policies, device_time="profile", task_timeout_s=DEMO_TASK_TIMEOUT_S)
            extra = {"demo": {"samples": DEMO_SAMPLES, "task_timeout_s": DEMO_TASK_TIMEOUT_S}}
            try:
                exp = run_experiment(spec, be, run_dir, opts, manifest_extra=extra, predict=True,
                                     on_progress=on_progress)
            except (RunError, SimulationError, RuntimeError, ValueError) as err:
                raise fail(f"demo: {err} (run folder: {run_dir})", code=1) from None
        summary = exp.summary
        if exp.interrupted:
            console.print(f"interrupted: agents stopped, network removed; partial results in {run_dir}")
        if exp.report is None:
            raise fail(f"demo: the report could not be written ({exp.report_error}); the measurements are in "
                       f"{run_dir}: retry with `pamdi report {run_dir}`", code=1)
        rep = exp.report
        if as_json:
            print_json(summary)
            return
        _print(console, rep, backend, summary)
        console.print(f"wall time {time.time() - t0:.0f} s; run folder: {run_dir}")
        console.print(f"report: {rep['report']}; plots: {', '.join(rep['images'])}")


def _best(means: dict[str, float]) -> str | None:
    return min(means, key=means.__getitem__) if means else None


def _print(console, rep, backend: str, summary) -> None:  # type: ignore[no-untyped-def]
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.1f}"

    runs = {r["policy"]: r for r in (summary or {}).get("runs", [])}
    predicted = {(p, src): st.get("sim_mean_s") for p, r in runs.items() for src, st in r["sources"].items()}
    stretch = (summary or {}).get("time_stretch", 1.0)
    t = Table(title=f"inference time per source (ms), backend {backend}, device time "
                    f"{(summary or {}).get('device_time', '?')}, stretch {stretch:g}; sim: the simulator's "
                    "prediction for the same schedule; over: block ranges that overran their modelled time",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # Fits 80 columns whole (a log or a CI console is that wide): policy and source names never cut.
    for col in ("policy", "source", "done", "fail", "mean", "p50", "p95", "sim", "gap", "over"):
        t.add_column(col, justify="left" if col in ("policy", "source") else "right",
                     no_wrap=True)
    for r in rep["sources"]:
        sim = predicted.get((r["policy"], r["source"]))
        gap = "-" if sim is None or r["mean_s"] is None else f"{(r['mean_s'] - sim) / sim:+.1%}"
        over = runs.get(r["policy"], {}).get("overrun_fraction")
        t.add_row(r["policy"], r["source"], str(r["completed"]), str(r["failed"]), ms(r["mean_s"]),
                  ms(r["p50_s"]), ms(r["p95_s"]), ms(sim), gap, "-" if over is None else f"{over:.1%}")
    console.print(t)
    for policy, run in runs.items():
        for why in run.get("unfaithful", ()):
            console.print(f"[yellow]{policy} not faithful: {escape(why)}; treat its numbers with care[/yellow]")
    ts = rep.get("ts_source")
    if ts:
        measured = {r["policy"]: r["mean_s"] for r in rep["sources"] if r["source"] == ts and r["mean_s"] is not None}
        simulated = {p: v for (p, s), v in predicted.items() if s == ts and v is not None}
        emu_best, sim_best = _best(measured), _best(simulated)
        if emu_best is not None:
            line = f"lowest mean time of source {ts}: {emu_best} emulated"
            if sim_best is not None:
                line += f", {sim_best} simulated" + (" (agree)" if emu_best == sim_best else " (DISAGREE)")
            console.print(line)
            if "pa-mdi" in measured and emu_best != "pa-mdi":
                console.print(f"[yellow]PA-MDI did NOT give source {ts} the lowest mean time in this emulation "
                              f"({measured['pa-mdi'] * 1000:.0f} ms against {measured[emu_best] * 1000:.0f} ms "
                              f"for {emu_best})[/yellow]")
    red = rep["ts_reduction_pct"]
    if red:
        r = Table(title="PA-MDI against each baseline: change of each source's mean time (negative = PA-MDI faster)")
        r.add_column("baseline")
        others = [x["source"] for x in rep["sources"] if x["policy"] == "pa-mdi"]
        for src in others:
            r.add_column(f"{src}{' (TS)' if src == ts else ''}", justify="right")
        means = {(x["policy"], x["source"]): x["mean_s"] for x in rep["sources"]}
        for b in red:
            cells = []
            for src in others:
                base, pa = means.get((b, src)), means.get(("pa-mdi", src))
                cells.append("-" if not base or pa is None else f"{100.0 * (pa - base) / base:+.1f}%")
            r.add_row(b, *cells)
        console.print(r)
