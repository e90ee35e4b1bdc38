"""``pamdi net check``: two namespaces, one shaped link, ZeroMQ goodput and RTT measured."""

from __future__ import annotations

import json
import subprocess
import sys

from orchestrator.netem import tc
from orchestrator.netem.network import EmulatedNetwork, NetworkError, _read_line


def run_check(
    rate_mbit: float, delay_ms: float = 0.0, loss: float = 0.0, *, duration: float = 4.0, warmup: float = 1.0,
    pings: int = 30, use_netem: bool | None = None,
) -> dict[str, object]:
    """Build a 2-node network, measure, tear down. Returns the JSON that ``--json`` prints."""
    if rate_mbit <= 0:
        raise ValueError("rate_mbit must be positive")
    with EmulatedNetwork("net-check", use_netem=use_netem) as net:
        net.add_node("a")
        net.add_node("b")
        link = net.add_link("a", "b", rate_mbit, delay_ms, loss)
        py = sys.executable
        server = net.spawn("b", [py, "-m", "orchestrator.netem.probe", "server", "--warmup", str(warmup),
                                 "--timeout", str(warmup + duration + 60)], stdout=subprocess.PIPE)
        ready = _read_line(server.stdout, timeout=20)
        if not ready or not json.loads(ready).get("ready"):
            raise NetworkError("net check: probe server did not start")
        client = net.spawn("a", [py, "-m", "orchestrator.netem.probe", "client", "--peer", link.addr_b,
                                 "--rate-mbit", str(rate_mbit), "--duration", str(duration),
                                 "--warmup", str(warmup), "--pings", str(pings)], stdout=subprocess.PIPE)
        limit = warmup + duration + 60
        client_out, _ = client.communicate(timeout=limit)
        server_out, _ = server.communicate(timeout=limit)
        stats = net.link_stats()
        stage = "netem" if link.netem else ("forwarder" if link.forwarder is not None else "none")
    c = json.loads(client_out.decode().strip().splitlines()[-1])
    s = json.loads(server_out.decode().strip().splitlines()[-1])
    if "error" in c:
        raise NetworkError(f"net check client: {c['error']}")
    expected = tc.TCP_GOODPUT_FACTOR * rate_mbit
    measured = s.get("measured_mbit")
    return {
        "configured_mbit": rate_mbit,
        "expected_mbit": round(expected, 4),
        "measured_mbit": None if measured is None else round(measured, 4),
        "ratio": None if measured is None else round(measured / expected, 4),
        "rtt_ms": round(c["rtt_ms"], 3),
        "rtt_min_ms": round(c["rtt_min_ms"], 3),
        "expected_rtt_ms": 2 * delay_ms,
        "delay_ms": delay_ms,
        "loss": loss,
        "delay_stage": stage,
        "window_s": round(s.get("window_s", 0.0), 3),
        "frames": s.get("frames"),
        "frame_bytes": c["frame_bytes"],
        "tc": stats,
    }
