"""Shipped example specs (package data), loadable by bare name: ``pamdi simulate paper-5node-resnet50``.

``resolve_spec(arg)`` returns the path of ``arg`` when it is an existing file, else of the shipped
spec ``<arg>.yaml``; ``shipped_specs()`` lists the names.
"""

from __future__ import annotations

from pathlib import Path

SPECS_DIR = Path(__file__).resolve().parent


def shipped_specs() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))


def resolve_spec(arg: str | Path) -> Path:
    """A spec path from a path or a shipped spec's bare name; ``FileNotFoundError`` names both."""
    p = Path(arg)
    if p.is_file():
        return p
    name = p.name.removesuffix(".yaml")
    if p.parent == Path(".") and (SPECS_DIR / f"{name}.yaml").is_file():
        return SPECS_DIR / f"{name}.yaml"
    raise FileNotFoundError(f"{arg}: no such spec file, and no shipped spec of that name "
                            f"(shipped: {', '.join(shipped_specs()) or 'none'})")
