"""Agents die with the process that launched them (no orphans after a killed orchestrator or pytest).

A launcher process brings two agents up with the real local backend, prints their pids and then
waits; we SIGKILL the launcher (no cleanup code can run) and the agents must exit on their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.agent_support import process_alive

LAUNCHER = r"""
import json, sys, time
from pathlib import Path
from orchestrator.backends import get_backend
from orchestrator.backends.base import RunContext
from orchestrator.spec import parse_spec

spec = parse_spec({"name": "orphans", "nodes": [{"name": "a"}, {"name": "b"}], "full_mesh": {"rate_mbit": 100},
                   "sources": [{"name": "s", "node": "a", "model": "tiny", "samples": 1}]})
be = get_backend("local")
be.up(spec, RunContext(run_id="orphans", run_dir=Path(sys.argv[1])))
print(json.dumps({n: be.pid(n) for n in ("a", "b")}), flush=True)
time.sleep(600)
"""


def test_agents_exit_when_the_launcher_is_killed(tmp_path: Path) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path)], stdout=subprocess.PIPE,
                                text=True)
    pids: dict[str, int] = {}
    try:
        line = launcher.stdout.readline()  # type: ignore[union-attr]
        assert line, f"launcher ended without starting agents (rc {launcher.poll()})"
        pids = json.loads(line)
        assert all(process_alive(p) for p in pids.values())
        time.sleep(0.5)
        assert all(process_alive(p) for p in pids.values()), "agents must keep running while their launcher lives"
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline and any(process_alive(p) for p in pids.values()):
            time.sleep(0.1)
        left = [n for n, p in pids.items() if process_alive(p)]
        assert not left, f"agents {left} outlived their killed launcher"
        log = (tmp_path / "logs" / "a.log").read_text()
        assert "parent process" in log and "is gone" in log
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for p in pids.values():  # only the agents this test started
            if process_alive(p):
                os.kill(p, signal.SIGKILL)


def _agent(address: str, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "pamdi_node", "--listen", address, "--name", "x", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and "pamdi-agent ready" in proc.stdout.readline()
    return proc


def test_an_agent_without_orchestrator_messages_exits_and_a_heartbeat_keeps_it() -> None:
    """--idle-exit (containers and SRNs, which no parent takes down): silence ends the agent; the
    orchestrator's pings (a run's heartbeat) keep it."""
    from pamdi_node.agent.client import AgentClient

    idle = _agent("tcp://127.0.0.9:47311", "--idle-exit", "2")
    kept = _agent("tcp://127.0.0.9:47312", "--idle-exit", "2")
    client = AgentClient("tcp://127.0.0.9:47312")
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5.0:
            client.ping(timeout_s=2.0)
            time.sleep(0.5)
        assert idle.poll() is not None, "the silent agent did not exit"
        assert kept.poll() is None, "the agent exited although the orchestrator kept pinging it"
        assert client.ping(timeout_s=2.0)["state"] == "idle"
    finally:
        client.close()
        for p in (idle, kept):
            p.kill()
            p.wait()
