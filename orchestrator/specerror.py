"""One-line spec errors: the exception, and the bounded, escaped rendering of untrusted values.

Shared by ``orchestrator/spec.py`` (validation) and ``orchestrator/specfile.py`` (reading the YAML
file), which sits below it: neither imports the other's internals, so there is no import loop.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

MAX_TEXT = 4096  # description, paths, string parameters
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Untrusted values in messages: bounded in length and depth, escaped (repr), never whole.
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlevel = 2


class SpecError(ValueError):
    """A spec is wrong; the message is one line naming the file and the field at fault."""


def show(value: object) -> str:
    return _repr.repr(value)


def clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())  # one line, whatever the source
    return text if len(text) <= limit else f"{text[:limit]}..."


def _loc(parts: Iterable[object]) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in parts).replace(".[", "[")


def format_validation_error(err: ValidationError, origin: str) -> str:
    """One line: the first error with its field, then the other fields at fault, if any."""
    errors = err.errors(include_url=False, include_input=False)
    # A tuple with a bad item also reports itself "too short" (its items are counted after
    # validation): an echo of the item's error, not a second fault.
    echoes = [e for e in errors if e["type"] == "too_short"
              and any(o is not e and o["loc"][:len(e["loc"])] == e["loc"] for o in errors)]
    errors = [e for e in errors if e not in echoes] or errors
    first = errors[0]
    # Messages are ours or pydantic's, with untrusted values already bounded (``_show``); the clip
    # only keeps the line whole. Long enough for a catalogue listing (26 scenario names).
    loc, msg = _loc(first["loc"]), clip(first["msg"].removeprefix("Value error, "), 1000)
    line = f"{origin}: {loc}: {msg}" if loc else f"{origin}: {msg}"
    others = list(dict.fromkeys(_loc(e["loc"]) or "(top level)" for e in errors[1:]))
    if others:
        line += f" (also: {', '.join(others[:4])}{', ...' if len(others) > 4 else ''})"
    return line
