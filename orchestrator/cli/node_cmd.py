"""``pamdi node``: the node agent's own CLI (``pamdi_node/cli.py``) mounted in the pamdi app."""

from __future__ import annotations

import typer

from pamdi_node.cli import node_app


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
