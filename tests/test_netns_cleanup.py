"""Nothing of the project stays behind: after a normal run, after Ctrl-C, after `pamdi cleanup`
following a SIGKILLed orchestrator; a live run beside it is left alone. Also the CPU quota and the
in-place rate change, which are part of the same emulated network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.agent_support import process_alive

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, tc, cgroups)"),
    pytest.mark.timeout(120),
]

PAMDI = str(Path(sys.executable).parent / "pamdi")

# A child "orchestrator": builds a 3-node network with a delayed link (so a forwarder runs), starts a
# sleeper in each node, prints its run token, then waits to be interrupted or killed.
CHILD = textwrap.dedent("""
    import sys, time
    from orchestrator.netem.network import EmulatedNetwork
    with EmulatedNetwork("test") as net:
        for n in ("a", "b", "c"):
            net.add_node(n, cpus=0.5)
            net.spawn(n, ["sleep", "600"])
        net.add_link("a", "b", 10, 5.0)
        net.add_link("b", "c", 50)
        print(net.token, flush=True)
        time.sleep(600)
""")


def _traces_of(token: str) -> dict[str, list[str]]:
    from orchestrator.netem.cleanup import project_leftovers

    left = project_leftovers()
    found = {k: [x for x in v if token in x] for k, v in left.items()}
    # processes of the run: sleepers and the forwarder carry no token in argv, so look by netns too
    found["processes"] = [p for p in _forwarders() if token in p]
    return found


def _forwarders() -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "orchestrator.netem.forwarder" in cmd:
                out.append(cmd)
    return out


def _start_child() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    token = proc.stdout.readline().strip()
    assert len(token) == 6, token
    return proc, token


def _is_empty(found: dict[str, list[str]]) -> bool:
    return not any(found.values())


def test_normal_close_leaves_nothing() -> None:
    from orchestrator.netem.network import EmulatedNetwork

    with EmulatedNetwork("test") as net:
        net.add_node("a", cpus=0.5)
        net.add_node("b")
        net.add_link("a", "b", 10, delay_ms=2.0)
        token = net.token
        during = _traces_of(token)
        assert len(during["namespaces"]) == 3  # a, b and the middle (forwarder) namespace
        assert during["cgroups"] and during["records"]
    assert _is_empty(_traces_of(token)), _traces_of(token)


def test_ctrl_c_cleans_up() -> None:
    proc, token = _start_child()
    assert _traces_of(token)["namespaces"]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert _is_empty(_traces_of(token)), _traces_of(token)


def test_cleanup_after_sigkill_and_live_run_untouched() -> None:
    dead, dead_token = _start_child()
    live, live_token = _start_child()
    try:
        dead.kill()
        dead.wait(timeout=10)
        assert _traces_of(dead_token)["namespaces"], "SIGKILL leaves the namespaces (nothing could clean up)"
        out = subprocess.run([PAMDI, "cleanup", "--json"], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert live_token in report["live_runs_left_alone"]
        assert _is_empty(_traces_of(dead_token)), _traces_of(dead_token)
        assert len(_traces_of(live_token)["namespaces"]) == 4  # a, b, c, one middle
    finally:
        live.send_signal(signal.SIGINT)
        live.wait(timeout=30)
    assert _is_empty(_traces_of(live_token))


def test_cpu_quota_limits_a_busy_node() -> None:
    """A node with cpus=0.25 gets about a quarter of a core, measured from the process's own CPU
    time, in short throttled stretches: with the 5 ms CFS period a busy loop is stopped for ~3.75 ms
    at a time, not for most of the kernel's default 100 ms (which made block times bimodal)."""
    import statistics

    from orchestrator.netem import cgroups
    from orchestrator.netem.network import EmulatedNetwork

    spin = ("import time\nt=last=time.monotonic(); stalls=[]\n"
            "while (now:=time.monotonic())-t<1.5:\n"
            "    if now-last>0.001: stalls.append(now-last)\n"
            "    last=now\n"
            "print(time.process_time(), *stalls)")
    with EmulatedNetwork("test") as net:
        net.add_node("slow", cpus=0.25)
        group = net.nodes["slow"].cgroup
        assert group is not None and net.cg is not None
        quota, period = cgroups.quota_us(0.25)
        if net.cg.version == 1:
            assert (group / "cpu.cfs_period_us").read_text().split() == [str(period)]
            assert (group / "cpu.cfs_quota_us").read_text().split() == [str(quota)]
        else:
            assert (group / "cpu.max").read_text().split() == [str(quota), str(period)]
        proc = net.spawn("slow", [sys.executable, "-c", spin], stdout=subprocess.PIPE)
        out, _ = proc.communicate(timeout=30)
    cpu_s, *stalls = (float(x) for x in out.decode().split())
    # 1.5 s of wall time at 25% quota -> ~0.375 s of CPU (+ interpreter start-up outside the loop)
    assert 0.2 < cpu_s < 0.6, cpu_s
    # ~1.1 s of the 1.5 s stopped, in 5 ms-period pieces: hundreds of stalls of ~3.75 ms (a 100 ms
    # period gives ~15 stalls of ~75 ms).
    assert len(stalls) > 100 and statistics.median(stalls) < 0.015, (len(stalls), statistics.median(stalls))


def test_quota_period_is_short_but_keeps_the_kernels_minimum_quota() -> None:
    from orchestrator.netem.cgroups import MIN_QUOTA_US, quota_us

    assert quota_us(0.5) == (2500, 5000)
    assert quota_us(2.0) == (10000, 5000)  # more than one core: quota above the period
    assert quota_us(0.1) == (1000, 10000)  # 0.1 x 5 ms would be under the kernel's 1 ms minimum
    for cpus in (0.01, 0.07, 0.123, 0.29, 1.0, 3.3):
        quota, period = quota_us(cpus)
        assert quota >= MIN_QUOTA_US and quota / period == pytest.approx(cpus, rel=0.01)
    with pytest.raises(ValueError, match="cpus"):
        quota_us(0)


def test_rate_change_in_place() -> None:
    """set_link changes the tbf rate without rebuilding: the shaper keeps its counters."""
    from orchestrator.netem import tc
    from orchestrator.netem.network import EmulatedNetwork

    with EmulatedNetwork("test") as net:
        net.add_node("a")
        net.add_node("b")
        link = net.add_link("a", "b", 10)
        ns = net.nodes["a"].netns
        send = f"import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n" \
               f"[s.sendto(bytes(1000), ('{link.addr_b}', 9)) for _ in range(5)]"
        probe = net.spawn("a", [sys.executable, "-c", send])
        probe.wait(timeout=10)
        before = tc.stats(ns, link.if_a)
        net.set_link("a", "b", 40)
        after = tc.stats(ns, link.if_a)
        # A rebuilt shaper would start again from zero; the kernel may send a stray packet of its
        # own (IPv6 neighbour discovery) in between, so the counters may only have grown.
        assert before["packets"] >= 5 and after["packets"] >= before["packets"]
        assert after["bytes"] >= before["bytes"] >= 5000
        from orchestrator.netem.netns import ns_handle

        with ns_handle(ns) as h:
            idx = h.link_lookup(ifname=link.if_a)[0]
            root = next(q for q in h.get_qdiscs(index=idx) if q["handle"] == tc.ROOT_HANDLE)
            rate_bytes = root.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS")["rate"]
        assert rate_bytes * 8 == pytest.approx(40e6, rel=0.01)
        with pytest.raises(Exception, match="without a delay/loss stage"):
            net.set_link("a", "b", 40, delay_ms=5)


def test_next_run_starts_clean_after_a_sigkilled_orchestrator(tmp_path: Path) -> None:
    """No `pamdi cleanup`: the dead run's helpers die with it (PR_SET_PDEATHSIG) and the next netns
    run removes its namespaces, links, cgroups and record before building its own."""
    import time

    from orchestrator.backends.base import RunContext
    from orchestrator.backends.netns import NetnsBackend
    from orchestrator.netem import names
    from orchestrator.spec import parse_spec

    dead, token = _start_child()
    pids = names.RunRecord.load(names.STATE_DIR / f"{token}.json").pids  # type: ignore[union-attr]
    assert len(pids) == 4 and all(process_alive(p) for p in pids)  # three sleepers and the forwarder
    dead.kill()
    dead.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if process_alive(p)], "helpers outlived their SIGKILLed parent"
    assert _traces_of(token)["namespaces"], "SIGKILL leaves the namespaces (nothing could clean up)"

    spec = parse_spec({"name": "after-kill", "nodes": [{"name": "a"}, {"name": "b"}],
                       "full_mesh": {"rate_mbit": 50},
                       "sources": [{"name": "s", "node": "a", "model": "tiny", "samples": 1}]})
    backend = NetnsBackend()
    try:
        backend.up(spec, RunContext("after-kill", tmp_path, trace_dir=tmp_path / "agents"))
        assert _is_empty(_traces_of(token)), _traces_of(token)
    finally:
        backend.down()


def test_a_reused_pid_is_not_the_owner() -> None:
    from orchestrator.netem import names

    me = os.getpid()
    assert names.owner_alive(me, names.process_start_time(me))
    assert not names.owner_alive(me, (names.process_start_time(me) or 0) + 1)  # same pid, another process
    assert not names.owner_alive(0) and names.owner_alive(1)
