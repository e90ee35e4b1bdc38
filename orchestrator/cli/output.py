"""One way every command prints its result: a table for people, ``--json`` for scripts.

A command builds its result as plain data (what ``--json`` prints, unchanged) and hands it to
``emit``. Without ``--json`` the same data is drawn as rich tables: the scalars of a mapping as
``field  value`` rows (nested mappings flattened to dotted names), and every list of records as a
table of its own with a column per key. So the human form can never say something the JSON does
not, and a command cannot forget one of the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.table import Table

from orchestrator.cli.common import print_json

JsonOpt = typer.Option(False, "--json", help="Print JSON (for scripts) instead of tables.")


def _is_records(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def _flatten(obj: Mapping[str, Any], prefix: str, pairs: list[tuple[str, str]],
             tables: list[tuple[str, list[Mapping[str, Any]]]]) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            _flatten(value, f"{name}.", pairs, tables)
        elif _is_records(value):
            tables.append((name, value))
        else:
            pairs.append((name, _cell(value)))


def _records_table(rows: Sequence[Mapping[str, Any]], title: str | None) -> Table:
    from rich.table import Table

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(str(col), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in columns))
    return table


def emit(obj: Any, as_json: bool, *, title: str | None = None) -> None:
    """Print ``obj`` as JSON (``as_json``) or as tables of the same content."""
    if as_json:
        print_json(obj)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if _is_records(obj):
        console.print(_records_table(obj, title))
        return
    if not isinstance(obj, Mapping):
        console.print(_cell(obj))
        return
    pairs: list[tuple[str, str]] = []
    tables: list[tuple[str, list[Mapping[str, Any]]]] = []
    _flatten(obj, "", pairs, tables)
    if pairs:
        table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for key, value in pairs:
            table.add_row(key, value)
        console.print(table)
    for name, rows in tables:
        console.print(_records_table(rows, name))
