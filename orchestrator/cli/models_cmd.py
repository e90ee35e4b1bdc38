"""``pamdi models list|verify`` and ``pamdi profile``: the model zoo from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli.common import fail, print_json

models_app = typer.Typer(help="The model zoo: list models, verify exact partitioning.", no_args_is_help=True)


def _check_names(names: list[str] | None) -> list[str]:
    from pamdi_node.models import MODEL_NAMES

    names = names or list(MODEL_NAMES)
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise fail(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_NAMES)}")
    return names


@models_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Models with their block count, parameters and GFLOPs (batch 1)."""
    from pamdi_node.models import MODEL_NAMES
    from pamdi_node.models.zoo import build_model, count_params, get_spec, model_profile

    rows = []
    for name in MODEL_NAMES:
        spec = get_spec(name)
        prof = model_profile(name)
        rows.append(
            {
                "model": name,
                "blocks": spec.num_blocks,
                "params": count_params(build_model(name, device="meta")),
                "gflops": round(prof.total_flops / 1e9, 4),
                "input": list(prof.input_shape),
                "result_bytes": prof.result_bytes,
                "description": spec.description,
            }
        )
    if as_json:
        print_json({"models": {r.pop("model"): r for r in rows}})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pamdi model zoo (batch 1; FLOPs counted, a MAC = 2 FLOPs)")
    for col in ("model", "blocks", "params", "GFLOPs", "input", "description"):
        numeric = col in ("blocks", "params", "GFLOPs")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=col != "description")
    for r in rows:
        table.add_row(
            r["model"], str(r["blocks"]), f"{r['params'] / 1e6:.2f} M", f"{r['gflops']:.3f}",
            "x".join(map(str, r["input"])), r["description"],
        )  # fmt: skip
    Console().print(table)


# Largest accepted difference against the CPU reference when the blocks run on a GPU (other
# kernels, other summation orders: ~1e-5 on these models).
GPU_TOLERANCE = 1e-4


def run_verify(models: list[str] | None, as_json: bool, tolerance: float | None, seed: int,
               device: str = "cpu") -> bool:
    """Verify ``models`` and print the result; True when every diff is within ``tolerance``."""
    from pamdi_node.models.device import check_device
    from pamdi_node.models.verify import DEFAULT_TOLERANCE, verify_model

    try:
        check_device(device)
    except ValueError as err:
        raise fail(f"--device: {err}") from None
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE if device == "cpu" else GPU_TOLERANCE
    results = {name: verify_model(name, seed=seed, tolerance=tolerance, device=device)
               for name in _check_names(models)}
    if as_json:
        print_json({"device": device, "models": {
            n: {"max_abs_diff": r.max_abs_diff, "blocks": r.blocks, "topk_equal": r.topk_equal, "ok": r.ok}
            for n, r in results.items()}})
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"blocks run one by one on {device} vs the monolithic forward on cpu (seed {seed}, "
                            f"tolerance {tolerance:g})")
        for col in ("model", "blocks", "max |output|", "max_abs_diff", "top-k", "result"):
            table.add_column(col, justify="left" if col in ("model", "result") else "right")
        for name, r in results.items():
            verdict = "[green]exact[/]" if r.max_abs_diff == 0.0 else ("[green]ok[/]" if r.ok else "[red]MISMATCH[/]")
            topk = "-" if r.topk_equal is None else ("same" if r.topk_equal else "[red]differs[/]")
            table.add_row(name, str(r.blocks), f"{r.max_abs_output:.4g}", f"{r.max_abs_diff:.3g}", topk, verdict)
        Console().print(table)
    bad = [n for n, r in results.items() if not r.ok]
    if bad:
        typer.echo(f"verification failed for {', '.join(bad)} (diff above {tolerance:g} or top-k changed)", err=True)
    return not bad


@models_app.command("verify")
def verify(
    model: list[str] = typer.Option(None, "--model", "-m", help="Model to verify (repeatable); default: all."),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"device", "models": {NAME: {"max_abs_diff", "blocks", "topk_equal", "ok"}}} '
        "(topk_equal: GPT-2's top-k next tokens unchanged; null for the others)."),
    tolerance: float = typer.Option(None, "--tol", help="Largest accepted absolute difference "
                                    "(default 1e-6 on cpu, 1e-4 on cuda)."),
    seed: int = typer.Option(0, "--seed", help="Weight and input seed."),
    device: str = typer.Option("cpu", "--device", help="Where the blocks run: cpu or cuda[:N] "
                               "(the monolithic reference always runs on the CPU)."),
) -> None:
    """Run each model's blocks in sequence and its monolithic forward; exit 1 on a difference > --tol."""
    if not run_verify(model, as_json, tolerance, seed, device):
        raise typer.Exit(1)


def profile(
    model: str = typer.Argument(..., help="Model name (see `pamdi models list`)."),
    batch: int = typer.Option(1, "--batch", "-b", min=1),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="torch CPU threads."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N] (CUDA-synchronised timings)."),
    warmup: int = typer.Option(3, "--warmup", min=0),
    repeats: int = typer.Option(20, "--repeats", "-r", min=1, help="Timed runs per block (median is kept)."),
    top_k: int = typer.Option(None, "--top-k", help="GPT-2: size of the top-k result (default 5)."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output JSON file, or a folder (gets MODEL_bB_tT.json). Default: stdout."
    ),
) -> None:
    """Measure per-block forward times (median of repeats) and write a profile JSON."""
    _check_names([model])
    if device != "cpu" and not device.startswith("cuda"):
        raise fail(f"--device must be cpu or cuda, got {device!r}")
    from pamdi_node.models.profile import profile_filename
    from pamdi_node.models.profiling import profile_model

    try:
        prof = profile_model(model, batch, threads, device, warmup=warmup, repeats=repeats, top_k=top_k)
    except ValueError as err:
        raise fail(f"pamdi profile: {err}") from None
    if out is None:
        typer.echo(prof.model_dump_json(indent=2))
        return
    if out.is_dir() or str(out).endswith("/"):
        out.mkdir(parents=True, exist_ok=True)
        out = out / profile_filename(model, batch, threads, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    prof.save(out)
    typer.echo(f"{model}: {prof.num_blocks} blocks, {prof.total_time_s * 1e3:.2f} ms total -> {out}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.command("profile")(profile)
