"""Shipped sweep files (package data), usable by bare name: ``pamdi sweep paper``.

``resolve_sweep(arg)`` returns the path of the shipped sweep ``<arg>.yaml`` or None;
``shipped_sweeps()`` lists the names.
"""

from __future__ import annotations

from pathlib import Path

SWEEPS_DIR = Path(__file__).resolve().parent


def shipped_sweeps() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def resolve_sweep(arg: str | Path) -> Path | None:
    """The shipped sweep named ``arg`` (a bare name, with or without ``.yaml``), or None."""
    p = Path(arg)
    name = p.name.removesuffix(".yaml")
    if p.parent == Path(".") and (SWEEPS_DIR / f"{name}.yaml").is_file():
        return SWEEPS_DIR / f"{name}.yaml"
    return None
