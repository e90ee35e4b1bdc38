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


def spec_or_exit(path: Path | str) -> ExperimentSpec:
    """A spec from a file or a shipped spec's name (as ``simulate``/``emulate`` take it), or exit 2
    with one line."""
    from orchestrator.specs import resolve_spec

    try:
        return load_spec(resolve_spec(path))
    except (FileNotFoundError, SpecError) as err:
        raise fail(str(err)) from None


def select_policies(option: str | None, spec: ExperimentSpec | None = None) -> list[str]:
    """Resolve a ``--policy`` option: None = the spec's own list, ``all`` = the paper's five, or one name."""
    from orchestrator.spec import DEFAULT_POLICIES, POLICY_NAMES

    if option is None and spec is not None:
        return list(spec.policy)
    if option in (None, "all"):
        return list(DEFAULT_POLICIES)
    if option in POLICY_NAMES:
        return [option]
    raise fail(f"--policy: unknown policy {option!r}; known: {', '.join(POLICY_NAMES)}, all")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
