"""``pamdi net check`` (trust the host's shaping before an experiment) and ``pamdi cleanup``.

Also registers the other emulation commands owned by the same module family:
``pamdi scenarios``, ``pamdi calibrate`` and ``pamdi report``.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from orchestrator.cli.common import fail, print_json

net_app = typer.Typer(help="Local network emulation (namespaces + tc): checks, and a hands-on mode "
                      "(up, exec, link, show, down) that builds a topology and keeps it.", no_args_is_help=True)


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


# ------------------------------------------------------------------ hands-on mode (Mininet style)
NameOpt = typer.Option(None, "--name", "-n", help="the network's name (default: the only one up, else the spec's name)")


def _name(name: str | None) -> str:
    from orchestrator.netem import names

    if name:
        return name
    up = sorted(p.name[4:-5] for p in names.STATE_DIR.glob("net-*.json"))
    if len(up) == 1:
        return up[0]
    raise fail("--name: " + (f"several networks are up ({', '.join(up)}): say which" if up else
                             "no network is up (`pamdi net up SPEC`)"))


def _print_net(state: dict) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"network {state['name']} (spec {state['spec']}; delays by "
                    f"{'netem' if state['netem'] else 'the user-space forwarder: this kernel has no netem'})")
    for col in ("node", "namespace", "control"):
        t.add_column(col, no_wrap=True)
    for n, d in state["nodes"].items():
        t.add_row(n, d["netns"], d["control"])
    console.print(t)
    t = Table(title="links (both directions shaped alike)")
    for col in ("link", "if", "addresses", "Mbit/s", "delay ms", "jitter ms", "loss", "state"):
        t.add_column(col, no_wrap=True)
    for lk in state["links"]:
        t.add_row(f"{lk['a']}-{lk['b']}", lk["if"], f"{lk['addr_a']} / {lk['addr_b']}", f"{lk['rate_mbit']:g}",
                  f"{lk['delay_ms']:g}", f"{lk.get('jitter_ms', 0):g}", f"{lk['loss']:g}", "up" if lk["up"] else "DOWN")
    console.print(t)
    console.print("tc in effect (to reproduce by hand):", markup=False)
    for lk in state["links"]:
        for cmd in lk["tc"]:
            console.print(f"  {cmd}", markup=False, soft_wrap=True)
        if lk["delay_stage"] == "forwarder":
            console.print(f"  # {lk['a']}-{lk['b']}: delay {lk['delay_ms']:g} ms, loss {lk['loss']:g} by the "
                          f"forwarder in namespace {lk['middle_netns']}", markup=False, soft_wrap=True)


@net_app.command("up")
def net_up(
    spec: str = typer.Argument(..., help="spec file, or the name of a shipped spec"),
    name: str = typer.Option(None, "--name", "-n", help="the network's name (default: the spec's name)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Build a spec's namespaces and shaped links and keep them (until `pamdi net down`)."""
    _need_root("net up")
    from orchestrator.netem.handson import HandsOnError, up
    from orchestrator.spec import SpecError

    try:
        state = up(spec, name)
    except (HandsOnError, FileNotFoundError, SpecError) as err:
        raise fail(str(err)) from None
    if as_json:
        print_json(state)
    else:
        _print_net(state)
        typer.echo(f"`pamdi net exec NODE -- CMD`, `pamdi net link A B --rate/--delay/--jitter/--loss/--down`, "
                   f"`pamdi net down {state['name']}`")


@net_app.command("show")
def net_show(name: str = NameOpt, as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The kept network: namespaces, addresses, links and the tc commands in effect."""
    from orchestrator.netem.handson import HandsOnError, request

    try:
        state = request(_name(name), {"op": "show"})
    except HandsOnError as err:
        raise fail(str(err)) from None
    if as_json:
        print_json(state)
    else:
        _print_net(state)


@net_app.command("link")
def net_link(
    a: str = typer.Argument(..., help="one end (node name)"),
    b: str = typer.Argument(..., help="the other end"),
    rate: float = typer.Option(None, "--rate", help="Mbit/s"),
    delay: float = typer.Option(None, "--delay", help="one-way delay, ms"),
    jitter: float = typer.Option(None, "--jitter", help="delay spread, ms: uniform in delay ± jitter, in order "
                                 "(netem only)"),
    loss: float = typer.Option(None, "--loss", help="loss probability, 0..1"),
    down: bool = typer.Option(None, "--down/--up", help="take the link down (both ends) or bring it back"),
    name: str = NameOpt,
    as_json: bool = typer.Option(False, "--json", help="print the link as JSON"),
) -> None:
    """Change a link of the kept network in place (as a radio scenario would)."""
    from orchestrator.netem.handson import HandsOnError, read_state, request

    body = {"op": "link", "a": a, "b": b, "rate_mbit": rate, "delay_ms": delay, "jitter_ms": jitter, "loss": loss,
            "up": None if down is None else not down}
    try:
        if jitter and not read_state(_name(name))["netem"]:
            # Agents apply jitter where netem is missing, but a hands-on link has no agents.
            raise fail(f"net link {a} {b}: --jitter needs netem (sch_netem), which this kernel lacks, and a "
                       "hands-on link has no agents to apply it; load netem (modprobe sch_netem) or leave --jitter out")
        state = request(_name(name), body)
    except HandsOnError as err:
        raise fail(f"net link {a} {b}: {err}") from None
    lk = next(x for x in state["links"] if {x["a"], x["b"]} == {a, b})
    if as_json:
        print_json(lk)
        return
    spread = f" ± {lk['jitter_ms']:g}" if lk.get("jitter_ms") else ""
    typer.echo(f"{lk['a']}-{lk['b']}: {lk['rate_mbit']:g} Mbit/s, {lk['delay_ms']:g}{spread} ms, loss {lk['loss']:g}, "
               f"{'up' if lk['up'] else 'DOWN'}")


@net_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def net_exec(ctx: typer.Context, node: str = typer.Argument(..., help="node name"), name: str = NameOpt) -> None:
    """Run a command inside a node's namespace: `pamdi net exec a -- ip addr`."""
    import subprocess
    import sys

    from orchestrator.netem.handson import HandsOnError, read_state

    _need_root("net exec")
    cmd = list(ctx.args[1:]) if ctx.args[:1] == ["--"] else list(ctx.args)  # only a leading `--` is ours
    if not cmd:
        raise fail("net exec: give a command after `--` (e.g. `pamdi net exec a -- ip addr`)")
    try:
        state = read_state(_name(name))
    except HandsOnError as err:
        raise fail(str(err)) from None
    if node not in state["nodes"]:
        raise fail(f"net exec: no node {node!r} in network {state['name']!r}; nodes: {', '.join(state['nodes'])}")
    rc = subprocess.call([sys.executable, "-m", "orchestrator.netem.nsexec", "--netns",
                          state["nodes"][node]["netns"], "--", *cmd])
    raise typer.Exit(rc)


@net_app.command("down")
def net_down(name: str = typer.Argument(None, help="the network (default: the only one up)")) -> None:
    """Tear the kept network down: namespaces, links, forwarders; nothing is left behind."""
    _need_root("net down")
    from orchestrator.netem.handson import HandsOnError, down

    name = _name(name)
    try:
        removed = down(name)
    except HandsOnError as err:
        raise fail(str(err)) from None
    typer.echo(f"network {name} down" + (f" (also removed {len(removed)} leftovers)" if removed else ""))
