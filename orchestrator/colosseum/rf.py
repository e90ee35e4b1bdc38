"""RF scenario control over SSH: ``colosseumcli rf start|stop|info|radiomap`` on one SRN.

The scenario is reservation-wide, so the commands run on the first SRN of the config. The docs'
rule "wait more than 15 s between rf stop and rf start" (faq/issues.rst; the MCHEM may take up to
15 s to clear) is kept across separate ``pamdi`` invocations: the time of the last ``rf stop`` is
remembered in a small state file per team, and ``start`` sleeps out the remainder of
``rf_stop_start_gap_s`` (default 16 s) before sending ``rf start``. After ``rf stop``,
``rf info`` is polled until the status is CLEARED or ERROR, as the docs advise.

``rf info`` and ``rf radiomap`` are asked for cliff's JSON (``-f json``); a client that refuses
the option (an older cliff: argparse's "invalid choice", exit 2) is asked again for its table, and
the session remembers it (``Session.cli_json``) so later calls go straight to the table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from orchestrator.colosseum.cli_wrappers import (
    CliOutputError,
    RadioMapEntry,
    RfInfo,
    parse_radiomap,
    parse_rf_info,
    parse_rf_start,
    parse_rf_stop,
)
from orchestrator.colosseum.transport import ColosseumError, CommandResult, Session, SrnError, q

log = logging.getLogger(__name__)


class RfError(ColosseumError):
    pass


def _state_file(team: str) -> Path:
    base = Path(os.environ.get("PAMDI_STATE_DIR", os.path.expanduser("~/.cache/pamdi")))
    return base / f"colosseum-rf-{team}.json"


def last_stop_time(team: str) -> float | None:
    try:
        return float(json.loads(_state_file(team).read_text())["last_stop"])
    except (FileNotFoundError, KeyError, ValueError, json.JSONDecodeError):
        return None


def _record_stop(team: str, when: float) -> None:
    p = _state_file(team)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"last_stop": when}))


def _rf_srn(session: Session) -> int:
    return session.cfg.require_srns()[0]


async def _formatted(session: Session, srn: int, command: str) -> tuple[CommandResult, bool]:
    """Run a cliff ShowOne/Lister command as JSON where the client can, else as a table; returns
    the result and whether it is JSON."""
    if session.cli_json is not False:
        res = await session.colosseumcli(srn, f"{command} -f json")
        refused = res.exit_status == 2 and ("invalid choice" in res.stderr or "unrecognized arguments" in res.stderr)
        if not refused:
            session.cli_json = True
            return res, True
        log.info("colosseumcli on SRN %s has no JSON output (%s); reading its tables", srn, res.stderr.strip()[-120:])
        session.cli_json = False
    return await session.colosseumcli(srn, command), False


async def info(session: Session) -> RfInfo:
    srn = _rf_srn(session)
    res, as_json = await _formatted(session, srn, "rf info")
    if not res.ok:
        # While a scenario loads, the real client fails on int(None) for the start time.
        return RfInfo(None, "LOADING" if "NoneType" in res.stderr else "UNKNOWN", "", False, None)
    try:
        return parse_rf_info(res.stdout, as_json=as_json)
    except CliOutputError as err:
        raise RfError(f"SRN {srn} ({session.cfg.srn_host(srn)}): rf info: {err}") from None


async def radiomap(session: Session) -> list[RadioMapEntry]:
    srn = _rf_srn(session)
    res, as_json = await _formatted(session, srn, "rf radiomap")
    try:
        return parse_radiomap(res.stdout, as_json=as_json)
    except CliOutputError as err:
        raise RfError(f"SRN {srn} ({session.cfg.srn_host(srn)}): rf radiomap: {err}") from None


async def stop(session: Session, *, wait_clear_s: float = 30.0) -> RfInfo:
    srn = _rf_srn(session)
    res = await session.colosseumcli(srn, "rf stop")
    now = time.time()
    if not parse_rf_stop(res.stdout):
        current = await info(session)
        if current.stopped:
            log.info("rf stop: no scenario running (status %r)", current.status)
            return current
        raise RfError(f"SRN {srn} ({session.cfg.srn_host(srn)}): rf stop was not accepted: {res.stdout.strip()!r}")
    _record_stop(session.cfg.team, now)
    deadline = now + wait_clear_s
    current = await info(session)
    while not current.stopped and time.time() < deadline:
        await asyncio.sleep(1.0)
        current = await info(session)
    return current


async def start(
    session: Session, scenario: int, *, cycle: bool = False, radio_map: dict[str, object] | None = None
) -> str:
    """Start ``scenario``; returns the printed start time (HH:MM:SS). Raises RfError on failure."""
    cfg = session.cfg
    srn = _rf_srn(session)
    last = last_stop_time(cfg.team)
    if last is not None:
        wait = cfg.rf_stop_start_gap_s - (time.time() - last)
        if wait > 0:
            log.info("waiting %.1f s: more than 15 s must pass between rf stop and rf start", wait)
            await asyncio.sleep(wait)
    args = f"rf start {int(scenario)}"
    if radio_map is not None:
        path = f"/tmp/pamdi-radiomap-{os.getpid()}.json"
        conn = await session.srn(srn)
        async with conn.start_sftp_client() as sftp, sftp.open(path, "w") as f:
            await f.write(json.dumps(radio_map))
        args += f" -m {q(path)}"
    if cycle:
        args += " -c"
    res = await session.colosseumcli(srn, args, timeout=max(cfg.command_timeout_s, 120.0))
    parsed = parse_rf_start(res.stdout)
    if not parsed.ok:
        raise RfError(f"SRN {srn} ({cfg.srn_host(srn)}): rf start {scenario} failed: {parsed.error}")
    assert parsed.start_time is not None
    return parsed.start_time


async def ensure_running(session: Session, scenario: int, *, cycle: bool) -> tuple[RfInfo, str | None]:
    """Make ``scenario`` the running one (stop another first, honouring the 15 s rule)."""
    current = await info(session)
    if current.running and current.scenario_id == scenario:
        return current, None
    if current.running:
        log.info("stopping running scenario %s to start %s", current.scenario_id, scenario)
        await stop(session)
    started = await start(session, scenario, cycle=cycle)
    return await info(session), started


__all__ = ["RfError", "SrnError", "ensure_running", "info", "last_stop_time", "radiomap", "start", "stop"]
