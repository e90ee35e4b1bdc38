"""tc shaping of a lab host's outgoing links, as remote shell commands (``shape: true`` hosts).

A lab host has one data-plane interface towards all its peers (a Wi-Fi mesh, a switch), so each
direction of a spec link is shaped at its sender, per destination address:

    root htb 1: (unclassified traffic: not shaped)
      class 1:K (line rate; only classifies)  <- u32 filter: ip dst = peer K's data address
        tbf (K+0x100): rate R burst B limit L  (the spec's rate for that link)

tbf is the leaf because an htb class alone let messages of up to ~64 KB pass at line rate after an
idle spell (``orchestrator/netem/tc.py``), and tbf is the token bucket the simulator models. The
rate changes in place (``tc qdisc change``). Delays are applied by the receiving agents
(``agent_delayed_links``), so no netem is needed on the devices; loss is not emulated (a real
link has its own). ``down`` deletes the root qdisc, which gives the interface back its default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from orchestrator.netem.tc import QUEUE_LIMIT_BYTES, burst_bytes, rate_arg
from orchestrator.sshlink import q

LINE_RATE = "10gbit"  # the classifying htb classes must never be the bottleneck


def tbf_handle(k: int) -> str:
    return f"{k + 0x100:x}:"


def tbf_args(rate_mbit: float) -> str:
    return f"tbf rate {rate_arg(rate_mbit)} burst {burst_bytes(rate_mbit)} limit {QUEUE_LIMIT_BYTES}"


def install_script(tc: str, ifname: str, peers: Mapping[str, tuple[str, float]]) -> str:
    """One shell script that shapes ``ifname``: ``peers`` maps a peer node to (its data address,
    rate in Mbit/s), each peer getting class K = its index + 1 (sorted by node name)."""
    dev = q(ifname)
    lines = [f"{tc} qdisc replace dev {dev} root handle 1: htb"]
    for k, (_node, (addr, rate)) in enumerate(sorted(peers.items()), start=1):
        lines += [
            f"{tc} class add dev {dev} parent 1: classid 1:{k:x} htb rate {LINE_RATE}",
            f"{tc} qdisc add dev {dev} parent 1:{k:x} handle {tbf_handle(k)} {tbf_args(rate)}",
            f"{tc} filter add dev {dev} parent 1: protocol ip prio 1 u32 match ip dst {q(addr)}/32 flowid 1:{k:x}",
        ]
    return " && ".join(lines)


def change_command(tc: str, ifname: str, k: int, rate_mbit: float) -> str:
    return f"{tc} qdisc change dev {q(ifname)} parent 1:{k:x} handle {tbf_handle(k)} {tbf_args(rate_mbit)}"


def remove_command(tc: str, ifname: str) -> str:
    return f"{tc} qdisc del dev {q(ifname)} root 2>/dev/null; true"


def peer_classes(peers: Mapping[str, object]) -> dict[str, int]:
    """Peer node -> its class number K (as ``install_script`` numbers them)."""
    return {node: k for k, node in enumerate(sorted(peers), start=1)}


def parse_tbf_counters(text: str, classes: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``tc -s -j qdisc show dev IF`` -> {peer node: {bytes, packets, drops, backlog}} for our tbfs."""
    try:
        entries = json.loads(text or "[]")
    except json.JSONDecodeError:
        return {}
    by_handle = {tbf_handle(k): node for node, k in classes.items()}
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        node = by_handle.get(str(e.get("handle", "")))
        if e.get("kind") == "tbf" and node is not None:
            out[node] = {"bytes": int(e.get("bytes", 0)), "packets": int(e.get("packets", 0)),
                         "drops": int(e.get("drops", 0)), "backlog": int(e.get("backlog", 0))}
    return out
