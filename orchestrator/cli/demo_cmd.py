"""``pamdi demo``: the main job of ``make demo``.

Interim version (issue 2): verifies that every zoo model's blocks, run one by one, reproduce the
monolithic forward exactly, and prints the table. The emulation issue replaces it with the real demo.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo() -> None:
        """Check exact layer partitioning of every model in the zoo (interim main job)."""
        from orchestrator.cli.models_cmd import run_verify

        if not run_verify(None, as_json=False, tolerance=1e-6, seed=0):
            raise typer.Exit(1)
