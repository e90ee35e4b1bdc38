"""``pamdi simulate`` and ``pamdi allocate``: the discrete-event simulator and the exact fluid optimum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from orchestrator.cli.common import fail, print_json, select_policies


def _load(spec_arg: str) -> tuple[Any, Path]:
    from orchestrator.spec import SpecError, load_spec
    from orchestrator.specs import resolve_spec

    try:
        path = resolve_spec(spec_arg)
        return load_spec(path), path
    except (FileNotFoundError, SpecError) as err:
        raise fail(str(err)) from None


def _fmt(x: float | None, scale: float = 1000.0, digits: int = 1) -> str:
    return "-" if x is None else f"{x * scale:.{digits}f}"


def _print_table(spec: Any, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from orchestrator.metrics import compare

    console = Console()
    table = Table(title=f"{spec.name}: simulated inference time per source (ms)")
    draws = next((s["replicas"]["n"] for r in summary["runs"] for s in r["sources"].values() if "replicas" in s), 0)
    cols = ["policy", "source", "γ", "done", "failed", "mean", "p50", "p95", "max"]
    if draws:
        cols.append(f"mean of {draws} ± sd")
    for col in cols:
        table.add_column(col, justify="left" if col in ("policy", "source") else "right")
    for run in summary["runs"]:
        for i, (name, s) in enumerate(run["sources"].items()):
            rep = s.get("replicas") or {}
            extra = [f"{_fmt(rep.get('mean_s'))} ± {_fmt(rep.get('sd_s'))}"] if draws else []
            table.add_row(run["policy"] if i == 0 else "", name, f"{s['priority']:g}", str(s["completed"]),
                          str(s["failed"]), _fmt(s["mean_s"]), _fmt(s["p50_s"]), _fmt(s["p95_s"]), _fmt(s["max_s"]),
                          *extra)
        table.add_row("", "[dim]weighted[/dim]", "", "", "", _fmt(run["weighted_mean_s"]), "", "", "",
                      *([""] if draws else []), end_section=True)
    console.print(table)
    cmp = compare(summary, "pa-mdi")
    if cmp:
        ct = Table(title="PA-MDI mean-time reduction vs each baseline (%; negative = PA-MDI slower)")
        others = [r["policy"] for r in summary["runs"] if r["policy"] != "pa-mdi"]
        ct.add_column("source")
        ct.add_column("γ", justify="right")
        for o in others:
            ct.add_column(f"vs {o}", justify="right")
        prio = {n: s["priority"] for r in summary["runs"] for n, s in r["sources"].items()}
        for src, vs in cmp.items():
            ct.add_row(src, f"{prio[src]:g}", *[("-" if vs[o] is None else f"{vs[o]:+.1f}") for o in others])
        console.print(ct)
    failures = {(r["policy"], n): s["failures"] for r in summary["runs"] for n, s in r["sources"].items()
                if s["failures"]}
    for (pol, src), reasons in failures.items():
        console.print(f"[yellow]{pol}/{src} failures:[/yellow] {json.dumps(reasons)}")


def _add_replicas(spec: Any, policies: list[str], summary: dict[str, Any], seed: int | None, base_dir: Path,
                  replicas: int) -> None:
    """Each source's mean over ``replicas`` beacon-phase draws (draw 0 is the run above) into its
    summary entry as ``replicas: {n, mean_s, sd_s}``."""
    from orchestrator.predict import Prediction, draw_means
    from orchestrator.simulator import SimOptions

    opts = SimOptions(beacon_period_s=spec.beacon_period_ms / 1000.0)
    for r in summary["runs"]:
        means = {n: [st["mean_s"]] for n, st in r["sources"].items()}
        for other in draw_means(spec, r["policy"], opts, range(1, replicas), seed=seed, base_dir=base_dir):
            for n, mean in other.items():
                means[n].append(mean)
        for n, st in r["sources"].items():
            p = Prediction.of(means[n])
            st["replicas"] = {"n": replicas, "mean_s": p.mean_s, "sd_s": p.sd_s}


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        spec: str = typer.Argument(..., help="spec file, or the name of a shipped spec (`pamdi specs list`)"),
        policy: str = typer.Option(None, "--policy", "-p", help="policy name or 'all' (default: the spec's)"),
        seed: int = typer.Option(None, "--seed", help="random seed (default: the spec's)"),
        as_json: bool = typer.Option(False, "--json", help="print the summary JSON"),
        records: Path = typer.Option(None, "--records", help="write per-task records (JSON lines) here"),
        replicas: int = typer.Option(1, "--replicas", min=1,
                                     help="also simulate this many draws of the nodes' beacon phases (same "
                                          "arrivals) and give each source's mean over them ± their sd: near "
                                          "saturation one draw's mean moves with the phases alone"),
    ) -> None:
        """Simulate a spec under one or all policies (discrete-event, profiled block times)."""
        from orchestrator.simulator import SimulationError, run_policies

        s, path = _load(spec)
        policies = select_policies(policy, s)
        try:
            summary, results = run_policies(s, policies, seed=seed, base_dir=path.parent)
            if replicas > 1:
                _add_replicas(s, policies, summary, seed, path.parent, replicas)
        except SimulationError as err:
            raise fail(f"{path}: {err}") from None
        for run in summary["runs"]:
            res = results[run["policy"]]
            run["sim"] = {"events": res.events, "wall_s": round(res.wall_s, 4), "end_s": res.end_s}
        if records is not None:
            with records.open("w") as fh:
                for name, res in results.items():
                    for r in res.records:
                        fh.write(json.dumps({"policy": name, **r.to_dict()}) + "\n")
        if as_json:
            print_json(summary)
        else:
            _print_table(s, summary)

    @app.command()
    def allocate(
        spec: str = typer.Argument(..., help="spec file, or the name of a shipped spec"),
        as_json: bool = typer.Option(False, "--json", help="print the allocation JSON"),
        rho_max: float = typer.Option(None, "--rho-max", help="utilization cap of the static allocation"),
    ) -> None:
        """Exact fluid optimum (HiGHS): lower bound and static allocation per source."""
        from orchestrator.allocator import AllocationError
        from orchestrator.allocator import allocate as do_allocate
        from orchestrator.simulator import SimulationError, load_profiles, source_views

        s, path = _load(spec)
        try:
            views = source_views(s, load_profiles(s, base_dir=path.parent))
            alloc = do_allocate(s, views, rho_max=rho_max)
        except (AllocationError, SimulationError) as err:
            raise fail(f"{path}: {err}") from None
        if as_json:
            print_json(alloc.to_dict())
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        t = Table(title=f"{s.name}: static allocation (ρ ≤ {alloc.rho_max:g}); times without queueing")
        for col in ("source", "share", "route (node: blocks)"):
            t.add_column(col)
        for src, routes in alloc.plan.items():
            for i, (frac, steps) in enumerate(routes):
                if frac < 1e-3:
                    continue
                route = " → ".join(f"{n}:{a}-{b}" if b > a else f"{n}(relay)" for n, a, b in steps)
                t.add_row(src if i == 0 else "", f"{frac:.3f}", route)
        console.print(t)
        pt = Table(title="predicted mean inference time (ms)")
        for col in ("source", "γ", "lower bound (ρ≤1)", f"static (ρ≤{alloc.rho_max:g})"):
            pt.add_column(col, justify="right")
        prio = {x.name: x.priority for x in s.sources}
        for src in alloc.plan:
            pt.add_row(src, f"{prio[src]:g}", _fmt(alloc.bound.per_source_s[src]), _fmt(alloc.static.per_source_s[src]))
        pt.add_row("weighted", "", _fmt(alloc.bound.objective_s), _fmt(alloc.static.objective_s))
        console.print(pt)
        util = ", ".join(f"{n} {u:.2f}" for n, u in alloc.static.node_util.items())
        console.print(f"worker utilization: {util}; solve {alloc.bound.solve_s * 1000:.1f} ms "
                      f"({alloc.bound.variables} variables)")
