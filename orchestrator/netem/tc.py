"""Link shaping with tc through pyroute2: tbf for the rate, netem for delay/loss when present.

Each end of a link shapes its own egress, so both directions are shaped and no ingress/ifb
redirection is needed:

    root tbf 1: rate R burst B limit L -> child: bfifo (kernel default),
                                          or netem 10: (delay [jitter], loss) when present

Jitter: netem ``delay D J`` with no distribution table (the kernel then draws uniformly in D ± J,
the model of ``pamdi_node.jitter``), plus a netem ``rate`` of ``NETEM_ORDER_RATE`` only to keep the
link in order: with a rate set, netem times each packet from the last one queued, never before it,
so jitter does not reorder (TCP would see reordering as loss). netem jitters per packet, the agents'
delay line per message: a message of many packets arrives with the latest draw among them.

Why tbf and not htb: on this kernel an htb class let any message of up to ~64 KB through at line
rate after the link had been idle (measured: 12-65 KB in 0.3-0.5 ms at 3.3 Mbit/s, where the rate
says 30-165 ms; 200 KB messages were shaped), so small activations (ResNet-56's 16-64 KB) crossed
"20 Mbit/s" links almost for free. tbf is the plain token bucket the simulator models: measured
within 3 KB (its bucket) of bytes / rate for every size.

The rate changes at run time with ``tc qdisc change`` (the child queue and its packets stay in
place, unlike Mininet's rebuild-the-qdisc approach). Delay/loss change with ``tc qdisc change`` on
the netem child. Without netem, delay comes from the agents (``PeerConfig.apply_delay``) or, with
loss, from ``orchestrator.netem.forwarder``.

Goodput: TCP over a tbf-shaped veth reaches 1448/1514 = 95.6% of the configured rate (headers).
"""

from __future__ import annotations

import contextlib
import os
import secrets

from pyroute2.netlink.exceptions import NetlinkError

from orchestrator.netem.netns import create_netns, delete_netns, ns_handle

ROOT_HANDLE = 0x10000  # 1:
CHILD_PARENT = 0x10001  # 1:1, tbf's child slot
NETEM_HANDLE = 0x100000  # 10:
# Queue behind the bucket: as much as the pfifo of 1000 full frames it replaces.
QUEUE_LIMIT_BYTES = 1000 * 1514
# Goodput of TCP over a shaped Ethernet link relative to the configured rate: MSS 1448 (timestamps)
# over a 1514-byte frame. Measured 0.956 on this kind of host.
TCP_GOODPUT_FACTOR = 1448 / 1514

# netem's own rate on a jittered link, set only for in-order release (module doc): 32 Gbit/s is under
# the ceiling of its 32-bit byte rate and adds 0.4 µs per full frame, far below any shaped rate.
NETEM_ORDER_RATE = "32gbit"

_netem_cache: bool | None = None


def netem_params(delay_ms: float, jitter_ms: float, loss: float) -> dict[str, object]:
    """pyroute2's netem options (delay and jitter in µs, loss in %) for one link end."""
    params: dict[str, object] = {"delay": int(delay_ms * 1000), "loss": loss * 100, "limit": 10_000}
    if jitter_ms > 0:
        params.update(jitter=int(jitter_ms * 1000), rate=NETEM_ORDER_RATE)
    return params


def rate_arg(rate_mbit: float) -> str:
    return f"{max(1, round(rate_mbit * 1e6))}bit"


def burst_bytes(rate_mbit: float, mtu: int = 1514) -> int:
    """Token bucket: 2 ms of traffic at the rate, at least two frames (so timer slack does not cap it)."""
    return max(2 * mtu, int(rate_mbit * 1e6 / 8 * 0.002))


def netem_available(refresh: bool = False) -> bool:
    """Whether this kernel has sch_netem, tried in a scratch namespace (cached).

    ``PAMDI_NETEM=0`` forces the user-space forwarder, ``PAMDI_NETEM=1`` asserts netem.
    """
    global _netem_cache
    forced = os.environ.get("PAMDI_NETEM")
    if forced in ("0", "1"):
        return forced == "1"
    if _netem_cache is not None and not refresh:
        return _netem_cache
    from orchestrator.netem.names import netns_name

    scratch = netns_name(secrets.token_hex(3), "probe")
    create_netns(scratch)
    try:
        with ns_handle(scratch) as ns:
            lo = ns.link_lookup(ifname="lo")[0]
            try:
                ns.tc("add", "netem", index=lo, handle=NETEM_HANDLE, delay=1000)
                _netem_cache = True
            except NetlinkError:
                _netem_cache = False
    finally:
        delete_netns(scratch)
    return _netem_cache


def shape(
    ns: str | None,
    ifname: str,
    rate_mbit: float,
    *,
    delay_ms: float = 0.0,
    loss: float = 0.0,
    jitter_ms: float = 0.0,
    with_netem: bool = False,
) -> None:
    """Install tbf (and a netem child when ``with_netem``) on the egress of ``ifname`` in ``ns``."""
    with ns_handle(ns) as h:
        idx = h.link_lookup(ifname=ifname)[0]
        h.tc("add", "tbf", index=idx, handle=ROOT_HANDLE, rate=rate_arg(rate_mbit), burst=burst_bytes(rate_mbit),
             limit=QUEUE_LIMIT_BYTES)
        if with_netem:
            h.tc("add", "netem", index=idx, handle=NETEM_HANDLE, parent=CHILD_PARENT,
                 **netem_params(delay_ms, jitter_ms, loss))


def change_rate(ns: str | None, ifname: str, rate_mbit: float) -> None:
    """Change the tbf rate in place (the child queue and the packets in it stay)."""
    with ns_handle(ns) as h:
        idx = h.link_lookup(ifname=ifname)[0]
        h.tc("change", "tbf", index=idx, handle=ROOT_HANDLE, rate=rate_arg(rate_mbit),
             burst=burst_bytes(rate_mbit), limit=QUEUE_LIMIT_BYTES)


def change_netem(ns: str | None, ifname: str, delay_ms: float, loss: float, jitter_ms: float = 0.0) -> None:
    with ns_handle(ns) as h:
        idx = h.link_lookup(ifname=ifname)[0]
        h.tc("change", "netem", index=idx, handle=NETEM_HANDLE, parent=CHILD_PARENT,
             **netem_params(delay_ms, jitter_ms, loss))


def unshape(ns: str | None, ifname: str) -> None:
    with ns_handle(ns) as h, contextlib.suppress(NetlinkError, IndexError):
        idx = h.link_lookup(ifname=ifname)[0]
        h.tc("del", index=idx, handle=ROOT_HANDLE)


def stats(ns: str | None, ifname: str) -> dict[str, int]:
    """Counters of the shaper: bytes/packets sent, drops, overlimits, backlog (bytes, packets)."""
    with ns_handle(ns) as h:
        idx = h.link_lookup(ifname=ifname)[0]
        out = {"bytes": 0, "packets": 0, "drops": 0, "overlimits": 0, "backlog_bytes": 0, "backlog_packets": 0}
        for q in h.get_qdiscs(index=idx):
            if q["handle"] != ROOT_HANDLE:
                continue
            basic = q.get_nested("TCA_STATS2", "TCA_STATS_BASIC") or {}
            queue = q.get_nested("TCA_STATS2", "TCA_STATS_QUEUE") or {}
            legacy = q.get_attr("TCA_STATS") or {}
            out["bytes"] = int(basic.get("bytes", legacy.get("bytes", 0)))
            out["packets"] = int(basic.get("packets", legacy.get("packets", 0)))
            out["overlimits"] = int(queue.get("overlimits", legacy.get("overlimits", 0)))
            out["backlog_bytes"] = int(queue.get("backlog", legacy.get("backlog", 0)))
            out["backlog_packets"] = int(queue.get("qlen", legacy.get("qlen", 0)))
            out["drops"] = int(queue.get("drops", legacy.get("drop", 0)))
        return out
