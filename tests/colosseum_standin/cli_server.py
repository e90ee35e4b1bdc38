#!/usr/bin/env python3
"""Stand-in for the Colosseum side of ``colosseumcli``: the SRN controller behind ``/socket/clisocket``.

The real ``colosseumcli`` (colosseum-wiot/colosseumcli-public 19.0.0, see shared/reference/
colosseum.md A.2) is a thin client: each command sends one JSON message ``{"version": "3.0",
"command": ...}`` over a UNIX stream socket and reads one JSON reply ``{"status": 100|200|400,
"message": ..., "data": "<json text>"}``. This server answers those messages for one reservation
(all SRNs of the lab share it, as all SRNs of a reservation share one RF scenario):

- ``rf_scenario_start``: 400 for an unknown scenario or when started less than ``min_gap_s``
  (15 s, the documented rule) after the last ``rf_scenario_stop``; 400 when a scenario is already
  running; otherwise 100 (accepted) and the scenario gets a start time after ``load_s`` seconds.
  ``fail_next_start`` makes the Scenario Conductor refuse it (status ERROR), as the client reports.
- ``rf_scenario_stop``: 200; the status reads STOPPING until ``clear_s`` seconds later, then CLEARED
  (the docs: "may take up to 15 seconds until it is truly stopped").
- ``rf_scenario_info``: 200 with ``scenario_id``, ``scenario_status``, ``scenario_start_time`` (epoch),
  ``scenario_cycle``, ``srn_radio_mapping`` ({"Node i": {"SRN", "RadioA", "RadioB"} | "None"}), or
  ``{}`` before any scenario. The running-state string is not documented (gap D); "ACTIVE" is used.
- ``rf_scenario_list``: the scenarios of ``SCENARIOS`` (IDs and node counts from the reference).
- ``usrp_info``: 200 with a message naming the USRP state (IDLE or RUNNING: RUNNING while a
  scenario is active) and the code, as the docs describe; the exact wording is not documented.

Default radio map (documented): the lowest SRN goes to the lowest scenario node, sequentially;
SRNs beyond the scenario's node count stay unmapped, scenario nodes beyond the SRNs get "None".

Run: ``cli_server.py SOCKET --srns 13,15,27 [--min-gap 15] [--clear 15] [--load 3]``. Control
messages (not part of the real protocol, used by tests): ``{"command": "_standin_fail_next_start"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import threading
import time

# scenario id -> (title, number of nodes, center frequency, cyclable); from colosseum.md "RF scenarios".
SCENARIOS: dict[int, tuple[str, int, str, bool]] = {
    1009: ("All paths 0 dB, 1 GHz", 10, "1 GHz", True),
    10009: ("All paths 0 dB, 1 GHz, 25 nodes", 25, "1 GHz", True),
    10024: ("All paths 0 dB, 2.4 GHz", 10, "2.4 GHz", True),
    10011: ("All paths 0 dB, 3.6 GHz", 10, "3.6 GHz", True),
    9971: ("Constant -50 dBFS rx power", 5, "1 GHz", False),
    51005: ("Fixed path loss 5 dB", 20, "1 GHz", True),
    1017: ("Rome close static", 50, "1 GHz", True),
}


class State:
    def __init__(self, srns: list[int], min_gap_s: float, clear_s: float, load_s: float) -> None:
        self.srns = sorted(srns)
        self.min_gap_s = min_gap_s
        self.clear_s = clear_s
        self.load_s = load_s
        self.lock = threading.Lock()
        self.scenario: int | None = None
        self.cycle = False
        self.accepted_at = 0.0
        self.stopped_at: float | None = None
        self.start_time: float | None = None
        self.radio_map: dict[str, object] = {}
        self.fail_next_start = False
        self.conductor_failed = False

    def status(self, now: float) -> str:
        if self.scenario is None:
            return ""
        if self.conductor_failed:
            return "ERROR"
        if self.stopped_at is not None:
            return "CLEARED" if now - self.stopped_at >= self.clear_s else "STOPPING"
        if now - self.accepted_at < self.load_s:
            return "LOADING"
        return "ACTIVE"

    def start_time_now(self, now: float) -> float | None:
        if self.scenario is None or self.conductor_failed:
            return None
        if self.stopped_at is None and now - self.accepted_at < self.load_s:
            return None
        return self.start_time


def default_radio_map(srns: list[int], nodes: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for i in range(nodes):
        out[f"Node {i + 1}"] = {"SRN": srns[i], "RadioA": 1, "RadioB": 2} if i < len(srns) else "None"
    return out


def handle(state: State, msg: dict[str, object]) -> dict[str, object]:
    cmd = msg.get("command")
    now = time.time()
    with state.lock:
        if cmd == "_standin_fail_next_start":
            state.fail_next_start = True
            return {"status": 200, "message": "ok"}
        if cmd == "rf_scenario_start":
            sid = msg.get("scenario_id")
            if sid not in SCENARIOS:
                return {"status": 400, "message": f"Scenario {sid} is not a valid RF scenario"}
            st = state.status(now)
            if st in ("LOADING", "ACTIVE"):
                return {"status": 400, "message": f"Scenario {state.scenario} is already running; use rf stop first"}
            if state.stopped_at is not None and now - state.stopped_at <= state.min_gap_s:
                return {
                    "status": 400,
                    "message": "The RF emulator is still clearing the previous scenario; "
                    f"wait more than {state.min_gap_s:g} s between rf stop and rf start",
                }
            nodes = SCENARIOS[int(sid)][1]
            radio_map = msg.get("srn_radio_mapping") or default_radio_map(state.srns, nodes)
            state.scenario = int(sid)
            state.cycle = bool(msg.get("scenario_cycle", False))
            state.accepted_at = now
            state.stopped_at = None
            state.start_time = now + state.load_s
            state.radio_map = radio_map  # type: ignore[assignment]
            state.conductor_failed = state.fail_next_start
            state.fail_next_start = False
            return {"status": 100, "message": "Scenario start accepted"}
        if cmd == "rf_scenario_stop":
            if state.scenario is None or state.status(now) in ("STOPPING", "CLEARED", "ERROR"):
                return {"status": 400, "message": "No active RF scenario"}
            state.stopped_at = now
            return {"status": 200, "message": "RF stop sent"}
        if cmd == "rf_scenario_info":
            if state.scenario is None:
                return {"status": 200, "message": "", "data": json.dumps({})}
            data = {
                "scenario_id": state.scenario,
                "scenario_status": state.status(now),
                "scenario_start_time": state.start_time_now(now),
                "scenario_cycle": state.cycle,
                "srn_radio_mapping": state.radio_map,
            }
            return {"status": 200, "message": "", "data": json.dumps(data)}
        if cmd == "rf_scenario_list":
            data = [
                {
                    "scenario_id": sid,
                    "title": title,
                    "radio_resources": {f"NODE {i + 1}": 2 for i in range(nodes)},
                    "center_freq": freq,
                    "scenario_cycle_compatible": cyc,
                }
                for sid, (title, nodes, freq, cyc) in SCENARIOS.items()
            ]
            return {"status": 200, "message": "", "data": json.dumps(data)}
        if cmd == "usrp_info":
            usrp = "RUNNING" if state.status(now) == "ACTIVE" else "IDLE"
            return {"status": 200, "message": f"USRP status: {usrp} (code 200)"}
        if cmd == "usrp_flash":
            return {"status": 200, "message": "USRP flash completed (code 200)"}
    return {"status": 400, "message": f"Unknown command {cmd}"}


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        raw = self.request.recv(3276800)
        try:
            msg = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            reply = {"status": 400, "message": "malformed request"}
        else:
            reply = handle(self.server.state, msg)  # type: ignore[attr-defined]
        self.request.sendall(json.dumps(reply).encode("utf-8"))


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--srns", required=True)
    ap.add_argument("--min-gap", type=float, default=15.0)
    ap.add_argument("--clear", type=float, default=15.0)
    ap.add_argument("--load", type=float, default=3.0)
    args = ap.parse_args()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    srv = Server(args.socket, Handler)
    srv.state = State([int(s) for s in args.srns.split(",")], args.min_gap, args.clear, args.load)  # type: ignore[attr-defined]
    os.chmod(args.socket, 0o777)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
