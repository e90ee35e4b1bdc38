"""One-line spec errors: the exception, and the bounded, escaped rendering of untrusted values.

Shared by ``orchestrator/spec.py`` (validation) and ``orchestrator/specfile.py`` (reading the YAML
file), which sits below it: neither imports the other's internals, so there is no import loop.
"""

from __future__ import annotations

import re
import reprlib

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
