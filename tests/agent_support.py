"""Helpers the agent tests share: is a process alive, how much memory it holds, and waiting for an
agent's sources to finish."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_sources_done(client: Any, source: str = "ts", timeout_s: float = 30.0, poll_s: float = 0.05) -> None:
    """Poll an ``AgentClient`` until ``source`` reports done; fail the test after ``timeout_s``."""
    deadline = time.time() + timeout_s
    while not client.stats()["sources"][source]["done"]:
        assert time.time() < deadline, client.stats()
        time.sleep(poll_s)
