"""Parsers for what ``colosseumcli`` prints, and nothing else.

``rf info`` and ``rf radiomap`` are cliff ShowOne / Lister commands: asked with ``-f json``
(cliff's JSON formatter, in the cliff colosseumcli bundles) they print JSON, which is read as such;
a client whose cliff lacks it refuses ``-f json`` and is read from its default table format
(``rf.py`` falls back). The plain commands (``rf start``, ``rf stop``, ``usrp info``) print text only.

colosseumcli 19.0.0 (colosseum-wiot/colosseumcli-public; shared/reference/colosseum.md A.2)
always exits 0 when it got a reply, even after a failure message, so success is decided from the
printed lines:

- ``--version``: ``colosseumcli 19.0.0``;
- ``rf start``: ``Scenario Start Time is HH:MM:SS`` on success; ``Colosseum failed to schedule the
  scenario at the Scenario Conductor`` or ``... at the Resource Manager`` followed by the server's
  message on failure;
- ``rf stop``: ``RF Stop command has been successfully sent`` (then two more lines);
- ``rf info``: a ShowOne table of scenario_id, scenario_status, scenario_start_time,
  scenario_cycle, Number of Nodes (blank values when no scenario ever ran);
- ``rf radiomap``: a Lister table ``Node | SRN | RadioA | RadioB``;
- ``usrp info``: a message with the USRP state (IDLE / RUNNING) and the code.
A socket failure prints ``ERROR: colosseumcli can not connect to server.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CANNOT_CONNECT = "ERROR: colosseumcli can not connect to server."
START_OK_RE = re.compile(r"Scenario Start Time is (\d{2}:\d{2}:\d{2})")
CONDUCTOR_FAIL = "Colosseum failed to schedule the scenario at the Scenario Conductor"
RESOURCE_FAIL = "Colosseum failed to schedule the scenario at the Resource Manager"
STOP_OK = "RF Stop command has been successfully sent"
# States after which a scenario no longer passes RF (colosseum_cli_constants.py).
STOPPED_STATES = ("CLEARED", "ERROR")
ENDED_STATES = ("COMPLETED", "ABORTED", "CLEARED", "ERROR")


class CliOutputError(ValueError):
    """colosseumcli printed something these parsers do not understand."""


def parse_version(stdout: str) -> str:
    m = re.search(r"colosseumcli\s+(\d+(?:\.\d+)*)", stdout)
    if not m:
        raise CliOutputError(f"unexpected `colosseumcli --version` output: {stdout.strip()[:200]!r}")
    return m.group(1)


def _table_rows(text: str) -> list[list[str]]:
    """The rows of a prettytable box (header first), cells stripped; other lines are ignored."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            rows.append([c.strip() for c in line[1:-1].split("|")])
    return rows


def parse_show_one(text: str) -> dict[str, str]:
    rows = _table_rows(text)
    if not rows:
        return {}
    if rows[0] != ["Field", "Value"]:
        raise CliOutputError(f"expected a Field/Value table, got header {rows[0]}")
    return {r[0]: r[1] for r in rows[1:] if len(r) == 2}


def parse_lister(text: str) -> list[dict[str, str]]:
    rows = _table_rows(text)
    if not rows:
        return []
    header = rows[0]
    return [dict(zip(header, r, strict=False)) for r in rows[1:] if len(r) == len(header)]


@dataclass(frozen=True)
class RfInfo:
    scenario_id: int | None
    status: str
    start_time: str
    cycle: bool
    nodes: int | None

    @property
    def running(self) -> bool:
        """A scenario is loaded and not stopped/ended (the running-state string is undocumented)."""
        return self.scenario_id is not None and self.status not in ENDED_STATES and self.status != ""

    @property
    def stopped(self) -> bool:
        return self.scenario_id is None or self.status in STOPPED_STATES or self.status in ENDED_STATES

    def as_dict(self) -> dict[str, object]:
        return {"scenario_id": self.scenario_id, "status": self.status, "start_time": self.start_time,
                "cycle": self.cycle, "nodes": self.nodes}


def _connected(stdout: str) -> None:
    """Raise when the client printed that it could not reach the reservation's server."""
    if CANNOT_CONNECT in stdout:
        raise CliOutputError(CANNOT_CONNECT)


def _json_value(stdout: str) -> object:
    """The one JSON value ``-f json`` printed."""
    import json

    _connected(stdout)
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        raise CliOutputError(f"`-f json` printed no JSON: {text[:300]!r}") from None


def json_show_one(stdout: str) -> dict[str, str]:
    """A ShowOne's ``-f json`` object as the table's Field -> Value strings (null -> "")."""
    value = _json_value(stdout)
    if not isinstance(value, dict):
        raise CliOutputError(f"`-f json` printed a {type(value).__name__}, expected an object")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def json_lister(stdout: str) -> list[dict[str, str]]:
    """A Lister's ``-f json`` list of row objects, cells as the table's strings (null -> "None")."""
    value = _json_value(stdout)
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise CliOutputError(f"`-f json` printed a {type(value).__name__}, expected a list of rows")
    return [{str(k): str(v) for k, v in r.items()} for r in value]


def parse_rf_info(stdout: str, *, as_json: bool = False) -> RfInfo:
    """``rf info``'s table, or with ``as_json`` its ``-f json`` object."""
    _connected(stdout)
    fields = json_show_one(stdout) if as_json else parse_show_one(stdout)
    if not fields:
        raise CliOutputError(f"`rf info` printed no fields: {stdout.strip()[:300]!r}")
    sid = fields.get("scenario_id", "")
    nodes = fields.get("Number of Nodes", "")
    return RfInfo(
        scenario_id=int(sid) if sid.isdigit() else None,
        status=fields.get("scenario_status", ""),
        start_time=fields.get("scenario_start_time", ""),
        cycle=fields.get("scenario_cycle", "") == "True",
        nodes=int(nodes) if nodes.isdigit() else None,
    )


@dataclass(frozen=True)
class RfStartResult:
    ok: bool
    start_time: str | None
    error: str | None


def parse_rf_start(stdout: str) -> RfStartResult:
    m = START_OK_RE.search(stdout)
    if m:
        return RfStartResult(True, m.group(1), None)
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    if CANNOT_CONNECT in lines:
        return RfStartResult(False, None, CANNOT_CONNECT)
    for i, ln in enumerate(lines):
        if ln == RESOURCE_FAIL:
            detail = " ".join(lines[i + 1:])
            return RfStartResult(False, None, f"{RESOURCE_FAIL}: {detail}" if detail else RESOURCE_FAIL)
        if ln == CONDUCTOR_FAIL:
            return RfStartResult(False, None, CONDUCTOR_FAIL)
    if any(ln.startswith(("Failed to open json file", "Failed to read json file")) for ln in lines):
        return RfStartResult(False, None, " ".join(lines))
    return RfStartResult(False, None, "unexpected `rf start` output: " + (" ".join(lines)[:300] or "(nothing)"))


def parse_rf_stop(stdout: str) -> bool:
    return STOP_OK in stdout


@dataclass(frozen=True)
class RadioMapEntry:
    node: int
    srn: int | None
    radio_a: int
    radio_b: int


def parse_radiomap(stdout: str, *, as_json: bool = False) -> list[RadioMapEntry]:
    """``rf radiomap``'s table, or with ``as_json`` its ``-f json`` list of rows."""
    _connected(stdout)
    rows = json_lister(stdout) if as_json else parse_lister(stdout)
    out = []
    for row in rows:
        try:
            node = int(row["Node"].split()[-1])
            srn = None if row["SRN"] == "None" else int(row["SRN"])
            out.append(RadioMapEntry(node, srn, int(row["RadioA"]), int(row["RadioB"])))
        except (KeyError, ValueError, IndexError) as err:
            raise CliOutputError(f"unexpected radiomap row {row}: {err}") from None
    return out


def parse_usrp_info(stdout: str) -> str:
    """The USRP state word (IDLE, RUNNING, ...) or 'UNKNOWN' when none is printed."""
    for word in ("IDLE", "RUNNING", "ERROR", "NOT FOUND"):
        if word in stdout.upper():
            return word
    return "UNKNOWN"
