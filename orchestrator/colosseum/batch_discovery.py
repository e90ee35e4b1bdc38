"""Finding the batch's agents on the data plane: the leader pings every candidate address of its
data-plane network (PING/PONG of the wire protocol) until each node of the spec has answered."""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import zmq

from orchestrator.colosseum.batch_conf import BatchConf, LeadError
from pamdi_node import wire

log = logging.getLogger("pamdi.batch_lead")

MAX_CANDIDATES = 4096  # a /20: beyond that a scan round would take too long; configure a smaller subnet
PROBE_ROUND_S = 2.0  # one ping round: radio links (LTE) take a few round trips to connect
PROBE_CHUNK = 256  # sockets open at once


def local_addresses() -> dict[str, list[ipaddress.IPv4Interface]]:
    """This container's IPv4 addresses per interface (``ip -o -4 addr show``)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    addrs: dict[str, list[ipaddress.IPv4Interface]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            addrs.setdefault(parts[1].split("@")[0], []).append(ipaddress.IPv4Interface(parts[3]))
    return addrs


def candidate_addresses(conf: BatchConf, addrs: Mapping[str, Sequence[ipaddress.IPv4Interface]]) -> list[str]:
    """Every host address where an agent of this batch may listen."""
    if conf.data_subnet:
        net = ipaddress.IPv4Network(conf.data_subnet, strict=False)
    else:
        own = [a for a in addrs.get(conf.data_interface or "", []) if a.network.prefixlen < 32]
        if not own:
            raise LeadError(f"data-plane interface {conf.data_interface!r} has no IPv4 network here (yet)")
        net = own[0].network
    if net.num_addresses > MAX_CANDIDATES:
        raise LeadError(f"data-plane network {net} has {net.num_addresses} addresses: too many to search for "
                        f"agents (at most {MAX_CANDIDATES}); set a smaller data_plane.subnet in the config")
    return [str(h) for h in (net.hosts() if net.prefixlen < 31 else net)]


def probe(addresses: Sequence[str], port: int, timeout_s: float, ctx: zmq.Context) -> dict[str, dict[str, Any]]:
    """One round of ``ping`` to ``tcp://ADDR:PORT`` for every address at once: {address: pong body}."""
    answers: dict[str, dict[str, Any]] = {}
    for i in range(0, len(addresses), PROBE_CHUNK):
        chunk = addresses[i:i + PROBE_CHUNK]
        socks: dict[zmq.Socket, tuple[str, str]] = {}
        poller = zmq.Poller()
        try:
            for addr in chunk:
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.setsockopt(zmq.MAXMSGSIZE, wire.MAX_HEADER_BYTES)
                s.setsockopt(zmq.IDENTITY, f"batch-lead-{uuid.uuid4().hex[:8]}".encode())
                s.connect(f"tcp://{addr}:{port}")
                mid = wire.new_id()
                s.send_multipart(wire.encode(wire.PING, "orchestrator", {}, msg_id=mid), flags=zmq.NOBLOCK)
                socks[s] = (addr, mid)
                poller.register(s, zmq.POLLIN)
            deadline = time.time() + timeout_s
            pending = len(socks)
            while pending and (left := deadline - time.time()) > 0:
                for s, _ in poller.poll(int(left * 1000) + 1):
                    addr, mid = socks[s]
                    try:
                        msg = wire.decode(s.recv_multipart(copy=False))
                    except wire.WireError as err:
                        log.warning("%s:%d answered with a malformed message: %s", addr, port, err)
                        continue
                    if msg.type == wire.PONG and msg.id == mid and isinstance(msg.body.get("node"), str):
                        answers[addr] = msg.body
                        poller.unregister(s)
                        pending -= 1
        finally:
            for s in socks:
                s.close(0)
    return answers


def discover(nodes: Sequence[str], candidates: Sequence[str], port: int, timeout_s: float,
             progress: Callable[[dict[str, str]], None] | None = None,
             round_s: float = PROBE_ROUND_S) -> dict[str, str]:
    """{node: radio address} once every node's agent has answered, else LeadError naming the missing."""
    found: dict[str, str] = {}
    deadline = time.time() + timeout_s
    ctx = zmq.Context()
    try:
        while True:
            todo = [a for a in candidates if a not in found.values()]
            for addr, pong in probe(todo, port, round_s, ctx).items():
                name = pong["node"]
                if name not in nodes:
                    log.warning("an agent named %r answers at %s:%d but the spec has no such node", name, addr, port)
                elif name in found and found[name] != addr:
                    raise LeadError(f"two agents claim node {name!r}: {found[name]} and {addr} (port {port})")
                else:
                    found[name] = addr
            if progress is not None:
                progress(dict(found))
            if all(n in found for n in nodes):
                return {n: found[n] for n in nodes}
            if time.time() >= deadline:
                missing = [n for n in nodes if n not in found]
                raise LeadError(
                    f"no agent answered for node(s) {', '.join(missing)} within {timeout_s:.0f} s on "
                    f"{len(candidates)} radio addresses ({candidates[0]}..{candidates[-1]}) port {port}; "
                    f"found {', '.join(f'{n}={found[n]}' for n in nodes if n in found) or 'none'}")
    finally:
        ctx.term()
