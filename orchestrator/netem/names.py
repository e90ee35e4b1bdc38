"""Run-unique names for everything a netns run creates, and the run records used by cleanup.

Every object carries the project prefix so that ``pamdi cleanup`` can find what a killed run left:
namespaces ``pamdi-<token>-<node>``, interfaces ``pm<token><suffix>`` (Linux limits interface names
to 15 characters, so the token is 6 hex digits), cgroups ``pamdi/<token>/<node>``. A run writes a
record ``/run/pamdi/<token>.json`` (owner pid, what it created) before creating anything, so cleanup
can tell a live run (owner alive: leave it alone) from a dead one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

NETNS_PREFIX = "pamdi-"
IFNAME_PREFIX = "pm"
TOKEN_RE = re.compile(r"^[0-9a-f]{6}$")
IFNAME_RE = re.compile(r"^pm([0-9a-f]{6})[a-z0-9]{1,7}$")
NETNS_RE = re.compile(r"^pamdi-([0-9a-f]{6})-")
STATE_DIR = Path(os.environ.get("PAMDI_STATE_DIR", "/run/pamdi"))
MAX_IFNAME = 15


def new_token() -> str:
    """A fresh 6-hex-digit run token not used by any recorded run."""
    while True:
        tok = secrets.token_hex(3)
        if not (STATE_DIR / f"{tok}.json").exists():
            return tok


def netns_name(token: str, node: str) -> str:
    return f"{NETNS_PREFIX}{token}-{node}"


def ifname(token: str, suffix: str) -> str:
    name = f"{IFNAME_PREFIX}{token}{suffix}"
    if len(name) > MAX_IFNAME:
        raise ValueError(f"interface name {name!r} longer than {MAX_IFNAME} characters")
    return name


def token_of_netns(name: str) -> str | None:
    m = NETNS_RE.match(name)
    return m.group(1) if m else None


def token_of_ifname(name: str) -> str | None:
    m = IFNAME_RE.match(name)
    return m.group(1) if m else None


@dataclass
class RunRecord:
    """What one run created; written before creation, updated as it goes, removed at teardown."""

    token: str
    owner_pid: int
    purpose: str = ""
    # The owner's start time (``process_start_time``): a pid reused by another process after the
    # owner died is not taken for the owner.
    owner_start: int | None = None
    namespaces: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.token}.json"

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> RunRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, field 22 of ``/proc/<pid>/stat``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def owner_alive(pid: int, start: int | None = None) -> bool:
    """Whether the process ``pid`` lives, and is the one that started at ``start`` when given."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or process_start_time(pid) == start


def all_records() -> list[RunRecord]:
    if not STATE_DIR.is_dir():
        return []
    out = []
    for p in sorted(STATE_DIR.glob("*.json")):
        rec = RunRecord.load(p)
        if rec is not None:
            out.append(rec)
    return out
