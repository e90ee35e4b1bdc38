"""Helpers shared by the CLI modules: spec loading with clean errors, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from orchestrator.spec import ExperimentSpec, SpecError, load_spec


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` to stderr and return an Exit to raise."""
    typer.echo(message, err=True)
    return typer.Exit(code)


def spec_or_exit(path: Path) -> ExperimentSpec:
    try:
        return load_spec(path)
    except SpecError as err:
        raise fail(str(err)) from None


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
