#!/usr/bin/env python3
"""The pamdi node of a Colosseum batch job (launched by start.sh; standard library only).

Reads radio.conf (written by ``pamdi colosseum batch``), waits until the radio stack has given the
container a data-plane address (the configured interface and/or subnet; never ``col0``), then
runs the agent bound to that address::

    pamdi node --listen tcp://<radio address>:<port> --name <node> --trace-dir /logs/traces --insecure

(batch containers are reachable by nobody but the emulated RF network and col0: no SSH, no NAS,
so there is no orchestrator to hand out CurveZMQ keys). On RF node 1 (``leader``) it also starts
the experiment leader, ``python3 -m orchestrator.colosseum.batch_lead radio.conf``, which finds
every agent on the radio network, runs the spec's policies with the shared runner and writes the
results under /logs/runs/<batch>/. SIGTERM (stop.sh) is passed on to both; traces stay in /logs.

State for status.sh (files next to $PAMDI_STATE_FILE, see common.sh): the leader reports its
progress in the INFO text itself; this process reports what only it sees (no radio address, the
agent or the leader dying) and, when everything has ended, records its exit code in ``.exit``
(0 = the experiment ended normally: the leader finished, or on the other nodes the leader
stopped the agent). After a signal (stop.sh) it leaves the state to stop.sh.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

ADDR_RE = re.compile(r"^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)/(\d+)")
STATE_FILE = os.environ.get("PAMDI_STATE_FILE", "/tmp/pamdi_radio_state")
_signalled = False


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(path + ".tmp", path)


def set_state(state: str, info: str) -> None:
    """Same files as common.sh's set_state (info first: status.sh reads the state, then the info)."""
    if _signalled:
        return  # stop.sh owns the state from STOPPING on
    _write(STATE_FILE + ".info", info)
    _write(STATE_FILE, state)
    print(f"pamdi batch node: {state}: {info}", flush=True)


def current_state() -> str:
    try:
        with open(STATE_FILE) as f:
            return f.read().strip()
    except OSError:
        return ""


def data_address(conf: dict) -> str | None:
    dp = conf.get("data_plane") or {}
    subnet = ipaddress.IPv4Network(dp["subnet"], strict=False) if dp.get("subnet") else None
    want_if = dp.get("interface")
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = ADDR_RE.match(line.strip())
        if not m:
            continue
        ifname, ip = m.group(1).split("@")[0], ipaddress.IPv4Address(m.group(2))
        if ifname == conf.get("control_interface", "col0") or (want_if and ifname != want_if):
            continue
        if subnet is None or ip in subnet:
            return str(ip)
    return None


def main() -> int:
    with open(sys.argv[1]) as f:
        conf = json.load(f)
    logs = os.environ.get("PAMDI_LOGS_DIR", "/logs")
    wait_s = float(os.environ.get("PAMDI_RADIO_WAIT_S", "300"))
    deadline = time.time() + wait_s
    addr = data_address(conf)
    if addr is None:
        set_state("ACTIVE", f"waiting for the radio's data-plane address {conf.get('data_plane')}")
    while addr is None and time.time() < deadline:
        time.sleep(1.0)
        addr = data_address(conf)
    if addr is None:
        set_state("ERROR", f"no data-plane address {conf.get('data_plane')} after {wait_s:.0f} s: is the radio up?")
        return 1
    leader = bool(conf.get("leader"))
    agent_cmd = shlex.split(os.environ.get("PAMDI_AGENT_CMD", "pamdi node"))
    listen = f"tcp://{addr}:{int(conf['agent_port'])}"
    cmd = [*agent_cmd, "--listen", listen, "--name", conf["node"], "--trace-dir", f"{logs}/traces", "--insecure",
           "--threads", str(int(conf.get("agent_threads", 1))), "--device", str(conf.get("agent_device", "cpu"))]
    print("pamdi batch node: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    agent = subprocess.Popen(cmd)
    lead: subprocess.Popen | None = None
    set_state("ACTIVE", f"agent {conf['node']} on {listen}" + ("; starting the leader" if leader else
                                                                 "; waiting for the leader (RF node 1)"))
    if leader:
        try:
            lead = subprocess.Popen([sys.executable, "-m", "orchestrator.colosseum.batch_lead", sys.argv[1]])
        except OSError as err:
            set_state("ERROR", f"leader not started: {err}")

    def stop(signum: int, frame: object) -> None:
        global _signalled
        del frame
        _signalled = True
        for p in (agent, lead):
            if p is not None and p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    failed = leader and lead is None
    agent_code: int | None = None
    lead_code: int | None = None
    while agent_code is None or (lead is not None and lead_code is None):
        time.sleep(0.2)
        if lead is not None and lead_code is None and (code := lead.poll()) is not None:
            lead_code = code
            if code != 0:
                failed = True
                if current_state() != "ERROR":  # the leader writes its own reason when it can
                    set_state("ERROR", f"leader exited with code {code}; see {logs}/pamdi-node.log")
        if agent_code is None and (code := agent.poll()) is not None:
            agent_code = code
            if code != 0:
                failed = True
                set_state("ERROR", f"agent {conf['node']} exited with code {code}; see {logs}/pamdi-node.log")
            elif not leader and not failed:
                set_state("ACTIVE", f"finished: agent {conf['node']} stopped by the leader; traces in {logs}/traces")
    code = 1 if failed or _signalled else 0
    _write(STATE_FILE + ".exit", str(code))
    return code


if __name__ == "__main__":
    sys.exit(main())
