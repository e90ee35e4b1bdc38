"""The ``pamdi`` command line (typer).

Each command group lives in its own module with a ``register(app)`` function, so that the
entry point stays small and heavy imports (torch, pandas) happen only inside the commands.
"""

from __future__ import annotations

import typer

from orchestrator.cli import (
    colosseum_cmd,
    compose_cmd,
    demo_cmd,
    emulate_cmd,
    image_cmd,
    lab_cmd,
    models_cmd,
    net_cmd,
    node_cmd,
    scenarios_cmd,
    sim_cmd,
    specs_cmd,
    sweep_cmd,
)

app = typer.Typer(
    name="pamdi",
    help="Priority-Aware Model-Distributed Inference on edge networks.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
)



def _print_version(value: bool) -> None:
    if value:
        from pamdi_node import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the pamdi version and exit.")) -> None:
    """Priority-Aware Model-Distributed Inference on edge networks."""


# Every command group, in the order `pamdi --help` lists them.
for _module in (models_cmd, specs_cmd, sim_cmd, node_cmd, emulate_cmd, net_cmd, scenarios_cmd, demo_cmd,
                image_cmd, compose_cmd, colosseum_cmd, lab_cmd, sweep_cmd):
    _module.register(app)


@app.command()
def version() -> None:
    """Print the pamdi version."""
    from pamdi_node import __version__

    typer.echo(__version__)


def main() -> None:
    app(prog_name="pamdi")
