"""``pamdi net check`` (trust the host's shaping before an experiment) and ``pamdi cleanup``.

Also registers the other emulation commands owned by the same module family:
``pamdi scenarios``, ``pamdi calibrate`` and ``pamdi report``.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from orchestrator.cli.common import fail, print_json

net_app = typer.Typer(help="Local network emulation (namespaces + tc): checks.", no_args_is_help=True)


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise fail(f"{what} needs root (network namespaces, veth, tc, cgroups)")


@net_app.command("check")
def check(
    rate_mbit: float = typer.Option(..., "--rate-mbit", help="configured link rate (tc tbf), Mbit/s"),
    delay_ms: float = typer.Option(0.0, "--delay-ms", help="one-way delay added on the link"),
    loss: float = typer.Option(0.0, "--loss", help="frame loss probability per direction, 0..1"),
    duration: float = typer.Option(4.0, "--duration", help="measured seconds of bulk transfer (after warm-up)"),
    warmup: float = typer.Option(1.0, "--warmup", help="seconds excluded at the start"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Two namespaces, one shaped link: measure ZeroMQ goodput and RTT against the configuration."""
    if rate_mbit <= 0 or rate_mbit > 100_000:
        raise fail("--rate-mbit must be in (0, 100000]")
    if delay_ms < 0 or not 0 <= loss < 1:
        raise fail("--delay-ms must be >= 0 and --loss in [0, 1)")
    if duration <= 0 or warmup < 0:
        raise fail("--duration must be > 0 and --warmup >= 0")
    _need_root("pamdi net check")
    from orchestrator.netem.check import run_check
    from orchestrator.netem.network import NetworkError

    try:
        out = run_check(rate_mbit, delay_ms, loss, duration=duration, warmup=warmup)
    except NetworkError as err:
        raise fail(f"net check failed: {err}", code=1) from None
    if as_json:
        print_json(out)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"net check: {rate_mbit:g} Mbit/s, {delay_ms:g} ms one-way, loss {loss:g}")
    t.add_column("quantity")
    t.add_column("configured / expected", justify="right")
    t.add_column("measured", justify="right")
    t.add_row("goodput (Mbit/s)", f"{out['expected_mbit']:.3f} (0.956 x rate)",
              "-" if out["measured_mbit"] is None else f"{out['measured_mbit']:.3f} ({out['ratio']:.3f})")
    t.add_row("RTT (ms)", f"{out['expected_rtt_ms']:.3f} + host", f"{out['rtt_ms']:.3f}")
    t.add_row("delay stage", "", str(out["delay_stage"]))
    Console().print(t)


def cleanup(
    all_runs: bool = typer.Option(False, "--all", help="also tear down runs whose owner is still alive"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only list what the project has now"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Remove what killed runs left: namespaces, veths, qdiscs, cgroups, helper processes."""
    _need_root("pamdi cleanup")
    from orchestrator.netem.cleanup import cleanup as do_cleanup
    from orchestrator.netem.cleanup import project_leftovers

    out = project_leftovers() if dry_run else do_cleanup(all_runs=all_runs)
    # The docker backend's containers and networks (issue 6); nothing when no Docker engine runs.
    from orchestrator.netem.docker_cleanup import cleanup_docker, docker_leftovers

    docker_out = docker_leftovers() if dry_run else cleanup_docker(all_runs=all_runs)
    out.update({f"docker_{k}": v for k, v in docker_out.items()})
    if as_json:
        print_json(out)
        return
    for key, items in out.items():
        typer.echo(f"{key}: {len(items)}")
        for item in items:
            typer.echo(f"  {item}")


def report_cmd(
    run_dir: Path = typer.Argument(..., help="a run folder (results/runs/<run-id>)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Regenerate a run folder's Parquet tables, plots (CDF, timeline) and report.md."""
    if not run_dir.is_dir():
        raise fail(f"{run_dir}: not a folder")
    from results.report import report

    try:
        out = report(run_dir)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise fail(f"report: {err}") from None
    if as_json:
        print_json(out)
        return
    typer.echo(Path(out["report"]).read_text())
    typer.echo(f"plots: {', '.join(out['images'])}")


def calibrate_cmd(
    model: str = typer.Option("resnet56", "--model", help="model whose blocks are run"),
    seconds: float = typer.Option(3.0, "--seconds", help="measured seconds per device"),
    device: list[str] = typer.Option([], "--device", help="device profile(s) (default: all)"),
    out: Path = typer.Option(None, "--out", help="where to store (default ~/.config/pamdi/calibration.json)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Measure each device profile's real speed (CPU quota + threads) on this host and store it."""
    from pamdi_node.models import MODEL_NAMES

    if model not in MODEL_NAMES:
        raise fail(f"--model: unknown model {model!r}; known: {', '.join(MODEL_NAMES)}")
    if seconds <= 0:
        raise fail("--seconds must be positive")
    _need_root("pamdi calibrate")
    from orchestrator.netem.calibrate import calibrate

    try:
        res = calibrate(model, seconds, device or None, out)
    except (ValueError, RuntimeError) as err:
        raise fail(f"calibrate: {err}", code=1) from None
    if as_json:
        print_json(res)
        return
    typer.echo(f"host: {res['host_ms']:.2f} ms per {model} forward (1 thread, no quota)")
    for name, d in res["devices"].items():
        typer.echo(f"{name:10s} cpus={d['cpus']} threads={d['threads']} {d['mean_ms']:.2f} ms  "
                   f"speed {d['speed']:.3f} (nominal {d['nominal_speed']:g})")
    typer.echo(f"stored in {res['path']}")


def register(app: typer.Typer) -> None:
    app.add_typer(net_app, name="net")
    app.command("cleanup")(cleanup)
    app.command("report")(report_cmd)
    app.command("calibrate")(calibrate_cmd)
