"""Hands-on mode (Mininet style): `pamdi net up small`, `exec`, `link`, `show`, `down`.

Real namespaces, veths and tc (root): the kernel's own view is what is checked (interface state
and qdisc rate read inside the namespace), and nothing of the network is left after `down`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, tc)")]


def pamdi(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from orchestrator.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def flags(node: str, ifname: str, env: dict[str, str]) -> set[str]:
    """The interface's flags (``<BROADCAST,MULTICAST,UP,...>``) inside ``node``'s namespace."""
    out = pamdi("net", "exec", node, "--name", "hands", "--", "ip", "-o", "link", "show", "dev", ifname, env=env)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split("<", 1)[1].split(">", 1)[0].split(","))


def test_net_up_exec_link_show_down_leaves_nothing(tmp_path: Path) -> None:
    from orchestrator.netem import netns as nsops

    env = dict(os.environ, PAMDI_STATE_DIR=str(tmp_path / "state"), COLUMNS="200")
    up = pamdi("net", "up", "small", "--name", "hands", "--json", env=env)
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    token = state["token"]
    try:
        assert set(state["nodes"]) == {"a", "b", "c"} and len(state["links"]) == 3
        assert all(ns in nsops.list_netns() for ns in state["namespaces"])
        lk = next(x for x in state["links"] if {x["a"], x["b"]} == {"a", "b"})
        # exec runs inside the node's namespace: a sees its own end of the a-b link, with its address.
        addr = pamdi("net", "exec", "a", "--name", "hands", "--", "ip", "-o", "-4", "addr", "show", "dev", lk["if"],
                     env=env)
        assert addr.returncode == 0 and lk["addr_a"] in addr.stdout, addr.stderr
        # Only the leading `--` is pamdi's: the command keeps its own.
        echo = pamdi("net", "exec", "a", "--name", "hands", "--", "echo", "--", "x", env=env)
        assert echo.returncode == 0 and echo.stdout.strip() == "-- x", (echo.stdout, echo.stderr)
        # link: the kernel's qdisc takes the new rate; --down takes both ends down, --up back.
        out = pamdi("net", "link", "a", "b", "--rate", "5", "--name", "hands", env=env)
        assert out.returncode == 0 and "5 Mbit/s" in out.stdout, out.stderr
        qdisc = pamdi("net", "exec", "b", "--name", "hands", "--", "tc", "qdisc", "show", "dev", lk["if"], env=env)
        assert "rate 5Mbit" in qdisc.stdout, qdisc.stdout
        assert pamdi("net", "link", "a", "b", "--down", "--name", "hands", env=env).returncode == 0
        for node in ("a", "b"):  # the interface's flags, as the kernel of that namespace has them
            assert "UP" not in flags(node, lk["if"], env), node
        shown = json.loads(pamdi("net", "show", "--name", "hands", "--json", env=env).stdout)
        ab = next(x for x in shown["links"] if {x["a"], x["b"]} == {"a", "b"})
        assert ab["up"] is False and ab["rate_mbit"] == 5 and any("tbf rate 5000000bit " in c for c in ab["tc"])
        assert pamdi("net", "link", "a", "b", "--up", "--name", "hands", env=env).returncode == 0
        assert "UP" in flags("a", lk["if"], env) and "UP" in flags("b", lk["if"], env)
        # Errors are one line: an unknown node, a second `up` of the same name, a bad loss.
        bad = pamdi("net", "exec", "z", "--name", "hands", "--", "true", env=env)
        assert bad.returncode == 2 and "no node 'z'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        again = pamdi("net", "up", "small", "--name", "hands", env=env)
        assert again.returncode == 2 and "is up already" in again.stderr
        worse = pamdi("net", "link", "a", "b", "--loss", "3", "--name", "hands", env=env)
        assert worse.returncode == 2 and "0 <= loss <= 1" in worse.stderr
        # Jitter: netem's, where the kernel has it (shown in effect); refused in one line where it does
        # not (no agents on a hands-on link to apply it instead), and the link keeps what it had.
        jit = pamdi("net", "link", "a", "b", "--delay", "10", "--jitter", "3", "--name", "hands", "--json", env=env)
        shown = json.loads(pamdi("net", "show", "--name", "hands", "--json", env=env).stdout)
        ab = next(x for x in shown["links"] if {x["a"], x["b"]} == {"a", "b"})
        if state["netem"]:
            assert jit.returncode == 0 and json.loads(jit.stdout)["jitter_ms"] == 3, jit.stderr
            assert ab["jitter_stage"] == "netem" and any("delay 10ms 3ms rate " in c for c in ab["tc"]), ab
        else:
            assert jit.returncode == 2 and len(jit.stderr.strip().splitlines()) == 1, jit.stderr
            assert "needs netem (sch_netem), which this kernel lacks" in jit.stderr and "modprobe" in jit.stderr
            assert (ab["jitter_ms"], ab["jitter_stage"], ab["delay_ms"]) == (0, "none", lk["delay_ms"]), ab
    finally:
        down = pamdi("net", "down", "hands", env=env)
    assert down.returncode == 0, down.stderr
    assert not [ns for ns in nsops.list_netns() if token in ns]
    assert not [ln for ln in nsops.root_links() if token in ln]
    assert not list((tmp_path / "state").glob("net-hands.*json"))
    from tests.agent_support import process_alive

    assert not process_alive(state["pid"])  # the holder is gone too
