"""``pamdi specs list|show|copy``: the shipped example specs (``orchestrator/specs/``)."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli.common import fail, print_json

specs_app = typer.Typer(help="The shipped example specs: list, show, copy to edit.", no_args_is_help=True)


def _path(name: str) -> Path:
    from orchestrator.specs import SPECS_DIR, shipped_specs

    path = SPECS_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise fail(f"no shipped spec {name!r}; shipped: {', '.join(shipped_specs())}")
    return path


@specs_app.command("list")
def list_specs(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Every shipped spec: name, nodes, sources and description."""
    from orchestrator.spec import load_spec
    from orchestrator.specs import shipped_specs

    rows = []
    for name in shipped_specs():
        s = load_spec(_path(name))
        rows.append({"name": name, "nodes": len(s.nodes), "sources": [f"{x.name}:{x.model}" for x in s.sources],
                     "description": s.description})
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="shipped specs (pamdi simulate NAME, pamdi specs copy NAME FILE)")
    t.add_column("name", no_wrap=True)
    t.add_column("nodes", justify="right")
    t.add_column("description")
    for r in rows:
        t.add_row(r["name"], str(r["nodes"]), r["description"] or "")
    Console().print(t)


@specs_app.command("show")
def show(name: str = typer.Argument(..., help="a shipped spec's name")) -> None:
    """Print a shipped spec's YAML (with its comments: the unknowns and why the loads are what they are)."""
    typer.echo(_path(name).read_text(), nl=False)


@specs_app.command("copy")
def copy(name: str = typer.Argument(..., help="a shipped spec's name"),
         dest: Path = typer.Argument(..., help="file (or folder) to write"),
         force: bool = typer.Option(False, "--force", help="overwrite an existing file")) -> None:
    """Copy a shipped spec to edit it (``pamdi simulate DEST`` then runs your copy)."""
    src = _path(name)
    if dest.is_dir():
        dest = dest / src.name
    if dest.exists() and not force:
        raise fail(f"{dest} exists; pass --force to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(src.read_text())
    typer.echo(str(dest))


def register(app: typer.Typer) -> None:
    app.add_typer(specs_app, name="specs")
