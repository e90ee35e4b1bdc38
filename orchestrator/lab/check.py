"""``pamdi lab check``: is the lab ready, and what are its links?

Per host (in parallel): reachable over SSH (through its jump host), user, CPU architecture, the
Python, torch and pamdi of its agent environment, the data-plane and management interfaces and
addresses, whether it can shape (tc and root or passwordless sudo), the clock offset to this
machine (from the shortest of three ``date`` round trips), and every problem that would stop a run
(``orchestrator/lab/facts.py``). Per ordered pair of reachable hosts (one after the other: pairs on
a shared Wi-Fi channel would disturb each other): the rate and RTT of the data-plane path from one
to the other, measured with iperf3 when both have it (TCP goodput, the sender's minimum RTT), else
with pamdi's own ZeroMQ probe (``orchestrator/netem/probe.py``: REQ/REP pings, then bulk frames
timed at the receiver). Rates are goodput (what the agents' transfers get); iperf3 sends at most
``cap_mbit`` so a fast wired link does not keep a host busy for long (the probe sends as fast as it
can for ``duration_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import asyncssh

from orchestrator.lab.facts import HostFacts, clock_offset, host_facts
from orchestrator.lab.inventory import Host, Inventory
from orchestrator.lab.session import HostError, LabSession
from orchestrator.sshlink import q

PROBE_ECHO_PORT, PROBE_BULK_PORT = 5611, 5612


@dataclass
class LinkMeasurement:
    src: str
    dst: str
    method: str
    rate_mbit: float | None
    rtt_ms: float | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.src, "to": self.dst, "method": self.method,
                "rate_mbit": None if self.rate_mbit is None else round(self.rate_mbit, 3),
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3), "error": self.error}


def _python(host: Host) -> str:
    envs = " ".join(f"{k}={q(v)}" for k, v in host.env.items())
    return f"env {envs} {q(host.python)}"


async def _server(session: LabSession, host: Host, command: str, ready: str, timeout: float) -> Any:
    """Start a measurement server on ``host`` and wait for its ready line; the process."""
    conn = await session.conn(host.name)
    proc = await conn.create_process(command, stderr=asyncssh.STDOUT)
    seen: list[str] = []

    async def until_ready() -> None:
        while True:
            line = await proc.stdout.readline()
            seen.append(line.strip())
            if not line or ready in line:
                return

    try:
        await asyncio.wait_for(until_ready(), timeout)
    except asyncio.TimeoutError:
        _stop(proc)
        raise session.error(host.name, "probe", f"measurement server not ready within {timeout:.0f} s") from None
    line = " ".join(x for x in seen if x and not x.startswith("---"))
    if ready not in line:
        _stop(proc)
        raise session.error(host.name, "probe", f"measurement server did not start: {line.strip()[:200] or 'exited'}")
    return proc


def _stop(proc: Any) -> None:
    # A signal where sshd honours it; closing the channel ends the rest (the servers exit after
    # one measurement or their timeout anyway).
    with contextlib.suppress(Exception):
        proc.terminate()
    proc.close()


async def measure_pair(session: LabSession, a: Host, fa: HostFacts, b: Host, fb: HostFacts, *, method: str,
                       duration_s: float, cap_mbit: float) -> LinkMeasurement:
    """Data-plane path a -> b."""
    src, dst = str(fa.data_address), str(fb.data_address)
    timeout = duration_s + 20
    if method == "iperf3":
        port = PROBE_BULK_PORT
        # `timeout`: the server ends by itself even where closing the SSH channel does not end it.
        proc = await _server(session, b, f"exec timeout {timeout:.0f} iperf3 -s -1 -B {q(dst)} -p {port} --forceflush",
                             "listening", 10)
        try:
            res = await session.run(a.name, f"iperf3 -c {q(dst)} -B {q(src)} -p {port} -t {duration_s:g} "
                                            f"-b {cap_mbit:g}M -J", timeout=timeout)
        finally:
            _stop(proc)
        try:
            out = json.loads(res.stdout)
        except json.JSONDecodeError:
            return LinkMeasurement(a.name, b.name, method, None, None, f"iperf3 gave no result: {res.stderr[-200:]}")
        if "error" in out:
            return LinkMeasurement(a.name, b.name, method, None, None, str(out["error"])[:200])
        end = out.get("end", {})
        rate = end.get("sum_received", {}).get("bits_per_second")
        streams = end.get("streams") or [{}]
        rtt = streams[0].get("sender", {}).get("min_rtt")
        return LinkMeasurement(a.name, b.name, method, rate / 1e6 if rate else None, rtt / 1000 if rtt else None)
    server = (f"exec timeout {timeout + 5:.0f} {_python(b)} -m orchestrator.netem.probe server --host {q(dst)} "
              f"--echo-port {PROBE_ECHO_PORT} "
              f"--bulk-port {PROBE_BULK_PORT} --warmup 0.5 --timeout {timeout:g}")
    proc = await _server(session, b, server, "ready", 30)
    try:
        res = await session.run(a.name, f"{_python(a)} -m orchestrator.netem.probe client --peer {q(dst)} "
                                         f"--echo-port {PROBE_ECHO_PORT} --bulk-port {PROBE_BULK_PORT} "
                                         f"--rate-mbit {cap_mbit:g} --duration {duration_s:g} --warmup 0.5 "
                                         "--pings 10", timeout=timeout)
        got = json.loads((await asyncio.wait_for(proc.stdout.readline(), timeout)) or "{}")
    finally:
        _stop(proc)
    try:
        sent = json.loads(res.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return LinkMeasurement(a.name, b.name, method, None, None, f"probe gave no result: {res.stderr[-200:]}")
    return LinkMeasurement(a.name, b.name, method, got.get("measured_mbit"), sent.get("rtt_min_ms"),
                           sent.get("error") or got.get("error"))


async def check_lab(inv: Inventory, *, local_pamdi: str, measure: bool = True, method: str = "auto",
                    duration_s: float = 2.0, cap_mbit: float = 1000.0,
                    session: LabSession | None = None) -> dict[str, Any]:
    """The check's report: ``{"hosts": [...], "links": [...], "ok": bool}`` (errors inside, not raised)."""
    own = session is None
    session = session or LabSession(inv)
    hosts: list[dict[str, Any]] = []
    facts: dict[str, HostFacts] = {}
    try:
        async def one(h: Host) -> dict[str, Any]:
            try:
                f = await host_facts(session, h, local_pamdi)
                clock = await clock_offset(session, h.name)
            except HostError as err:
                return {"host": h.name, "address": h.ssh_address, "reachable": False, "problems": [],
                        "error": f"{err.kind}: {err.detail}", "line": str(err)}
            facts[h.name] = f
            return {**f.as_dict(), "reachable": True, "shape": h.shape, "can_shape": f.shape_via is not None,
                    "device": h.device, "runtime": h.runtime, "clock_offset_s": clock["offset_s"],
                    "clock_uncertainty_s": clock["uncertainty_s"], "error": None,
                    "lines": [str(session.error(h.name, *p.split(": ", 1))) for p in f.problems]}

        hosts = list(await asyncio.gather(*(one(h) for h in inv.hosts)))
        links: list[dict[str, Any]] = []
        usable = [h for h in inv.hosts if h.name in facts and facts[h.name].data_address]
        if measure:
            for a in usable:
                for b in usable:
                    if a is b:
                        continue
                    fa, fb = facts[a.name], facts[b.name]
                    how = method if method != "auto" else ("iperf3" if fa.iperf3 and fb.iperf3 else "probe")
                    try:
                        m = await measure_pair(session, a, fa, b, fb, method=how, duration_s=duration_s,
                                               cap_mbit=cap_mbit)
                    except (HostError, json.JSONDecodeError, asyncio.TimeoutError) as err:
                        m = LinkMeasurement(a.name, b.name, how, None, None, str(err)[:300])
                    links.append(m.as_dict())
    finally:
        if own:
            await session.close()
    ok = all(h["reachable"] and not h["problems"] for h in hosts)
    return {"checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "local_pamdi": local_pamdi,
            "ok": ok, "hosts": hosts, "links": links}
