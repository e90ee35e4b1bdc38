#!/usr/bin/env python3
"""The pamdi node of a Colosseum batch job (launched by start.sh; standard library only).

Reads radio.conf (written by ``pamdi colosseum batch``), waits until the radio stack has given the
container a data-plane address (the configured interface and/or subnet; never ``col0``), then
runs the agent bound to that address::

    pamdi node --listen tcp://<radio address>:<port> --name <node> --trace-dir /logs/traces --insecure

(batch containers are reachable by nobody but the emulated RF network and col0: no SSH, no NAS,
so there is no orchestrator to hand out CurveZMQ keys). On RF node 1 (``leader``) it also starts
the experiment leader, ``python3 -m orchestrator.colosseum.batch_lead radio.conf``, when the image
has the orchestrator package. SIGTERM (stop.sh) is passed on to both; their traces stay in /logs.
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
    while addr is None and time.time() < deadline:
        time.sleep(1.0)
        addr = data_address(conf)
    if addr is None:
        print(f"pamdi batch node: no data-plane address {conf.get('data_plane')} after {wait_s:.0f} s", flush=True)
        return 1
    agent_cmd = shlex.split(os.environ.get("PAMDI_AGENT_CMD", "pamdi node"))
    listen = f"tcp://{addr}:{int(conf['agent_port'])}"
    cmd = [*agent_cmd, "--listen", listen, "--name", conf["node"], "--trace-dir", f"{logs}/traces", "--insecure",
           "--threads", str(int(conf.get("agent_threads", 1)))]
    print("pamdi batch node: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    procs = [subprocess.Popen(cmd)]
    if conf.get("leader"):
        lead = [sys.executable, "-m", "orchestrator.colosseum.batch_lead", sys.argv[1]]
        try:
            procs.append(subprocess.Popen(lead))
        except OSError as err:
            print(f"pamdi batch node: leader not started: {err}", flush=True)

    def stop(signum: int, frame: object) -> None:
        del frame
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return max((p.wait() for p in procs), default=0)


if __name__ == "__main__":
    sys.exit(main())
