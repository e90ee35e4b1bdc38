"""The ``pamdi`` command line (typer).

Each command group lives in its own module with a ``register(app)`` function, so that the
entry point stays small and heavy imports (torch, pandas) happen only inside the commands.
"""

from __future__ import annotations

import typer

from orchestrator.cli import (
    colosseum_cmd,
    demo_cmd,
    emulate_cmd,
    image_cmd,
    models_cmd,
    net_cmd,
    node_cmd,
    sim_cmd,
    sweep_cmd,
)

app = typer.Typer(
    name="pamdi",
    help="Priority-Aware Model-Distributed Inference on edge networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """Priority-Aware Model-Distributed Inference on edge networks."""


for _module in (models_cmd, sim_cmd, node_cmd, emulate_cmd, net_cmd, demo_cmd, image_cmd, colosseum_cmd,
                sweep_cmd):
    _module.register(app)


@app.command()
def version() -> None:
    """Print the pamdi version."""
    from pamdi_node import __version__

    typer.echo(__version__)


def main() -> None:
    app()
