"""``pamdi lab ...``: a lab of the user's own machines over SSH (the ``ssh`` backend's hosts).

    pamdi lab example > lab.yaml
    pamdi lab check lab.yaml [--no-links] [--method auto|probe|iperf3] [--json]
    pamdi lab deploy lab.yaml --wheelhouse DIR [--venv PATH] [--image FILE] [--host H ...]
    pamdi lab profile lab.yaml --model M --out DIR [--spec SPEC --write-spec OUT.yaml]
    pamdi emulate SPEC --backend ssh --inventory lab.yaml

Errors print one line per host naming the host and the cause, and exit 1; a bad inventory is
refused in one line naming the field, exit 2. ``check`` writes its report beside the inventory
(``<inventory>.check.json``, or ``--out``); the ``ssh`` backend copies it into each run folder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Literal, TypeVar

import typer

from orchestrator.cli.common import fail
from orchestrator.cli.output import JsonOpt, emit

T = TypeVar("T")

lab_app = typer.Typer(name="lab", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      help="A lab of your own machines over SSH: check, deploy, profile (run with "
                           "`pamdi emulate SPEC --backend ssh --inventory lab.yaml`).")
InventoryArg = typer.Argument(..., help="lab inventory YAML (`pamdi lab example` prints one)")
EXAMPLE = Path(__file__).resolve().parent.parent / "lab" / "lab.example.yaml"


def check_report_path(inventory: Path) -> Path:
    return inventory.with_name(inventory.stem + ".check.json")


def _load(path: Path):  # -> Inventory
    from orchestrator.lab.inventory import InventoryError, load_inventory

    try:
        return load_inventory(path)
    except InventoryError as err:
        raise fail(str(err)) from None


def _run(coro: Awaitable[T]) -> T:
    from orchestrator.lab.session import LabError

    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (LabError, ValueError) as err:
        raise fail(str(err), code=1) from None


def _local_pamdi() -> str:
    from pamdi_node import __version__

    return __version__


@lab_app.command("check")
def check_cmd(
    inventory: Path = InventoryArg,
    links: bool = typer.Option(True, "--links/--no-links", help="measure rate and RTT between every pair"),
    method: Literal["auto", "probe", "iperf3"] = typer.Option(
        "auto", "--method", help="link measurement: iperf3 when both hosts have it (auto), or pamdi's probe"),
    duration: float = typer.Option(2.0, "--duration", min=0.5, help="seconds of traffic per direction"),
    cap_mbit: float = typer.Option(1000.0, "--cap-mbit", min=0.1, help="the most a measurement sends, Mbit/s"),
    out: Path = typer.Option(None, "--out", help="report file (default: <inventory>.check.json)"),
    as_json: bool = JsonOpt,
) -> None:
    """Reachability, Python/torch/pamdi versions, clock offsets, data-plane addresses, tc rights, link rates/RTT."""
    import json

    from orchestrator.lab.check import check_lab

    inv = _load(inventory)
    report = _run(check_lab(inv, local_pamdi=_local_pamdi(), measure=links, method=method, duration_s=duration,
                            cap_mbit=cap_mbit))
    path = out or check_report_path(inventory)
    path.write_text(json.dumps(report, indent=2) + "\n")
    # The table shows the columns a person reads first; the JSON (and the file) has every fact.
    emit(report if as_json else _check_view(report, path), as_json, title="lab check")
    lines = [h["line"] for h in report["hosts"] if not h["reachable"]]
    lines += [line for h in report["hosts"] if h["reachable"] for line in h["lines"]]
    for line in lines:
        typer.echo(line, err=True)
    if not report["ok"]:
        raise typer.Exit(1)


_HOST_COLUMNS = ("host", "reachable", "user", "arch", "python", "torch", "pamdi", "data_interface", "data_address",
                 "mgmt_interface", "shape", "can_shape", "clock_offset_s", "problems", "error")


def _check_view(report: dict[str, Any], path: Path) -> dict[str, Any]:
    return {"ok": report["ok"], "report": str(path),
            "hosts": [{k: h.get(k) for k in _HOST_COLUMNS} for h in report["hosts"]],
            "links": [{k: v for k, v in m.items() if k != "error" or v} for m in report["links"]]}


@lab_app.command("deploy")
def deploy_cmd(
    inventory: Path = InventoryArg,
    wheelhouse: Path = typer.Option(None, "--wheelhouse", "-w",
                                    help="wheels for the hosts' platform (`pamdi image wheels`), with the pamdi wheel"),
    pamdi_only: bool = typer.Option(False, "--pamdi-only",
                                    help="build just the pamdi wheel of this tree into the wheelhouse folder first"),
    venv: str = typer.Option(None, "--venv", help="create this virtual environment on each host first "
                                                  "(--system-site-packages) and install there"),
    image: Path = typer.Option(None, "--image", help="node image tarball for runtime: docker hosts (docker save)"),
    host: list[str] = typer.Option([], "--host", help="only these hosts (repeatable)"),
    as_json: bool = JsonOpt,
) -> None:
    """Push the wheelhouse (or the node image) to the hosts and install pamdi; versions checked after."""
    from orchestrator.lab.deploy import deploy_host
    from orchestrator.lab.session import LabErrors, LabSession

    inv = _load(inventory)
    if wheelhouse is not None and pamdi_only:
        from orchestrator.image.wheels import WheelhouseError, build_pamdi_wheel

        try:
            build_pamdi_wheel(wheelhouse)
        except WheelhouseError as err:
            raise fail(f"--pamdi-only: {err}", code=1) from None
    names = host or [h.name for h in inv.hosts]
    unknown = [n for n in names if inv.endpoint(n) is None]
    if unknown:
        raise fail(f"--host {unknown[0]}: not in {inventory}")

    async def go() -> list[dict[str, Any]]:
        async with LabSession(inv) as session:
            reps = await session.each(lambda n: deploy_host(session, inv.host(n), wheelhouse, image, venv,
                                                            _local_pamdi()), names)
        out = [r.as_dict() for r in reps.values()]
        problems = [session.error(r["host"], *p.split(": ", 1)) for r in out for p in r["problems"]]
        if problems:
            raise LabErrors(problems)
        return out

    emit({"hosts": _run(go())}, as_json, title="lab deploy")


@lab_app.command("profile")
def profile_cmd(
    inventory: Path = InventoryArg,
    model: str = typer.Option(..., "--model", "-m", help="model to profile (see `pamdi models list`)"),
    out: Path = typer.Option(..., "--out", "-o", help="profile folder (a spec's `profiles:` can name it)"),
    batch: int = typer.Option(1, "--batch", "-b", min=1),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]"),
    warmup: int = typer.Option(3, "--warmup", min=0),
    repeats: int = typer.Option(20, "--repeats", "-r", min=1),
    reference: str = typer.Option(None, "--reference", help="host whose profile is the reference (default: first)"),
    host: list[str] = typer.Option([], "--host", help="only these hosts (repeatable)"),
    spec: Path = typer.Option(None, "--spec", help="with --write-spec: the spec to give the lab's speeds"),
    write_spec: Path = typer.Option(None, "--write-spec", help="write SPEC's copy with profiles: OUT and "
                                                               "each node at its host's measured speed"),
    as_json: bool = JsonOpt,
) -> None:
    """`pamdi profile` on every host, harvested into one folder (per-host profiles, reference, speeds)."""
    from orchestrator.lab.profiles import profile_lab, spec_for_lab
    from orchestrator.spec import SpecError

    inv = _load(inventory)
    if (spec is None) != (write_spec is None):
        raise fail("--spec and --write-spec go together")
    out.mkdir(parents=True, exist_ok=True)
    summary = _run(profile_lab(inv, out, model, batch=batch, device=device, warmup=warmup, repeats=repeats,
                               reference=reference, hosts=host or None))
    if spec is not None and write_spec is not None:
        from pamdi_node.models.profile import profile_filename

        try:
            spec_for_lab(spec, inv, out, write_spec, profile_filename(model, batch, 1, device).removesuffix(".json"))
        except (SpecError, ValueError, KeyError, FileNotFoundError) as err:
            raise fail(f"--write-spec: {err}", code=1) from None
        summary["spec"] = str(write_spec)
    summary["folder"] = str(out)
    emit(summary, as_json, title=f"lab profile {model}")


@lab_app.command("example")
def example_cmd() -> None:
    """Print an example inventory (five Jetson Xavier NX on a Wi-Fi mesh, two behind a jump host)."""
    typer.echo(EXAMPLE.read_text(), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
