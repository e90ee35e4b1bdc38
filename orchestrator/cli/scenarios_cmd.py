"""``pamdi scenarios list|show|import-iperf3``: the radio scenario catalogue."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli.common import fail, print_json

app = typer.Typer(help="Radio scenarios: link profiles and Colosseum RF scenario IDs.", no_args_is_help=True)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List every scenario (shipped and imported)."""
    import radio_scenarios as rs

    try:
        cat = rs.catalogue()
    except rs.ScenarioError as err:
        raise fail(str(err)) from None
    rows = [
        {"name": s.name, "colosseum_id": s.colosseum_id, "shapeable": s.shapeable,
         "time_varying": s.time_varying, "mean_rate_mbit": round(s.mean_rate_mbit(), 3) if s.shapeable else None,
         "description": s.description}
        for s in cat.values()
    ]
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="radio scenarios")
    # The names are what one types: never cut (the description wraps instead, at any width).
    t.add_column("name", no_wrap=True, min_width=max((len(r["name"]) for r in rows), default=4))
    for col in ("RF id", "profile", "Mbit/s"):
        t.add_column(col)
    t.add_column("description", overflow="fold", ratio=1)
    for r in rows:
        profile = ("time-varying" if r["time_varying"] else "constant") if r["shapeable"] else "-"
        t.add_row(r["name"], str(r["colosseum_id"] or ""), profile,
                  "" if r["mean_rate_mbit"] is None else f"{r['mean_rate_mbit']:g}", r["description"])
    Console().print(t)


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show one scenario with its link profile."""
    import radio_scenarios as rs

    try:
        s = rs.get(name)
    except rs.ScenarioError as err:
        raise fail(str(err)) from None
    data = s.model_dump(mode="json")
    if as_json:
        print_json(data)
        return
    import yaml

    typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@app.command("import-iperf3")
def import_iperf3_cmd(
    path: Path = typer.Argument(..., help="file written by `iperf3 -J` (client side)"),
    name: str = typer.Option(..., "--name", help="name of the new scenario"),
    description: str = typer.Option("", "--description"),
    delay_ms: float | None = typer.Option(None, "--delay-ms", help="one-way delay (default: min RTT / 2)"),
    no_loop: bool = typer.Option(False, "--no-loop", help="hold the last step instead of looping"),
    colosseum_id: int | None = typer.Option(None, "--colosseum-id", help="the RF scenario it was measured in"),
    force: bool = typer.Option(False, "--force", help="overwrite an imported scenario of that name"),
    as_json: bool = typer.Option(False, "--json", help="print the scenario as JSON"),
) -> None:
    """Turn an iperf3 measurement into a time-varying link profile (one step per interval)."""
    import radio_scenarios as rs
    from radio_scenarios.iperf3 import import_iperf3

    try:
        s = import_iperf3(path, name, description=description, delay_ms=delay_ms, loop=not no_loop,
                          colosseum_id=colosseum_id)
        dest = rs.save_user(s, overwrite=force)
    except (rs.ScenarioError, ValueError) as err:
        raise fail(str(err)) from None
    if as_json:
        print_json({"path": str(dest), **s.model_dump(mode="json")})
        return
    typer.echo(f"saved {s.name} ({len(s.points)} steps, mean {s.mean_rate_mbit():.2f} Mbit/s) to {dest}")


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="scenarios")
