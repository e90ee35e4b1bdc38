"""User-space delay/loss forwarder for kernels without netem.

Runs in a middle namespace that holds the inner ends of two veth pairs (one towards each node of
the link) and bridges raw Ethernet frames between them:

    node A [veth, tbf egress] <-> [ifa] forwarder [ifb] <-> [veth, tbf egress] node B

Frames are read with AF_PACKET raw sockets; PACKET_VNET_HDR keeps the checksum-offload metadata
of each frame (a veth hands over frames whose TCP checksum is still to be filled in), so frames
are re-sent exactly as received. Each direction is a FIFO of (release time, frame): a frame is
released ``delay`` after it arrived, so the added one-way delay is exact up to timer slack and the
order is kept. Each frame is dropped with probability ``loss`` (seeded). Rates are shaped by tbf
on the node ends, before the delay line, as a radio link would queue before the air.

Control: one JSON object per line on stdin, e.g. ``{"delay_ms": 10, "loss": 0.01}`` (both
directions) or ``{"delay_ms": [10, 20]}`` (a->b, b->a); ``{"stats": true}`` answers one JSON line
on stdout with per-direction counters. End of stdin (the orchestrator went away) stops the process.

``python -m orchestrator.netem.forwarder --a IFNAME --b IFNAME [--delay-ms D] [--loss P] [--seed S]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import socket
import sys
import time
from collections import deque

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
MAX_FRAME = 65536 + 64
SOCK_BUF = 4 * 1024 * 1024
DRAIN_BATCH = 256


def open_port(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    # Without this the socket would also see the frames we send out of this interface.
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUF)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


class Direction:
    """One direction of the link: a delay line with loss."""

    def __init__(self, rx: socket.socket, tx: socket.socket, delay_ms: float, loss: float, rng: random.Random):
        self.rx, self.tx, self.rng = rx, tx, rng
        self.queue: deque[tuple[int, bytes]] = deque()
        self.delay_ns = int(delay_ms * 1e6)
        self.loss = loss
        self.blocked = False
        self.counts = {"rx": 0, "tx": 0, "tx_bytes": 0, "lost": 0, "send_errors": 0}

    def receive(self) -> None:
        now = time.monotonic_ns()
        release = now + self.delay_ns
        for _ in range(DRAIN_BATCH):
            try:
                frame = self.rx.recv(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            self.counts["rx"] += 1
            if self.loss and self.rng.random() < self.loss:
                self.counts["lost"] += 1
                continue
            self.queue.append((release, frame))

    def release_due(self, now: int) -> None:
        q = self.queue
        self.blocked = False
        while q and q[0][0] <= now:
            frame = q[0][1]
            try:
                self.tx.send(frame)
            except BlockingIOError:
                self.blocked = True
                return
            except OSError:
                self.counts["send_errors"] += 1
            else:
                self.counts["tx"] += 1
                self.counts["tx_bytes"] += len(frame) - 10
            q.popleft()

    def next_release(self) -> int | None:
        return self.queue[0][0] if self.queue and not self.blocked else None


def _pair(value: object) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        return float(value[0]), float(value[1])
    return float(value), float(value)  # type: ignore[arg-type]


def serve(ifa: str, ifb: str, delay_ms: tuple[float, float], loss: tuple[float, float], seed: int) -> None:
    a, b = open_port(ifa), open_port(ifb)
    rng = random.Random(seed)
    dirs = (Direction(a, b, delay_ms[0], loss[0], rng), Direction(b, a, delay_ms[1], loss[1], rng))
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    pending = b""
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    while True:
        now = time.monotonic_ns()
        for d in dirs:
            d.release_due(now)
        heads = [t for t in (d.next_release() for d in dirs) if t is not None]
        timeout = max(0.0, (min(heads) - time.monotonic_ns()) / 1e9) if heads else 1.0
        wlist = [d.tx for d in dirs if d.blocked]
        readable, _writable, _ = select.select([a, b, stdin], wlist, [], timeout)
        for d in dirs:
            if d.rx in readable:
                d.receive()
        if stdin in readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                _control(line, dirs)


def _control(line: bytes, dirs: tuple[Direction, Direction]) -> None:
    try:
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise ValueError("control message must be a JSON object")
        if "delay_ms" in msg:
            for d, v in zip(dirs, _pair(msg["delay_ms"]), strict=True):
                d.delay_ns = int(v * 1e6)
        if "loss" in msg:
            for d, v in zip(dirs, _pair(msg["loss"]), strict=True):
                d.loss = v
        if msg.get("stats"):
            reply = {"a_to_b": dirs[0].counts, "b_to_a": dirs[1].counts,
                     "queued": [len(dirs[0].queue), len(dirs[1].queue)]}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    except (ValueError, TypeError, IndexError) as err:
        sys.stderr.write(f"forwarder: bad control line {line[:80]!r}: {err}\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="forwarder")
    p.add_argument("--a", required=True, help="interface towards node A")
    p.add_argument("--b", required=True, help="interface towards node B")
    p.add_argument("--delay-ms", type=float, nargs="+", default=[0.0], help="one-way delay (a->b [b->a])")
    p.add_argument("--loss", type=float, nargs="+", default=[0.0], help="frame loss probability (a->b [b->a])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", default="", help="run token (identifies the process for cleanup)")
    args = p.parse_args(argv)
    delay = (args.delay_ms[0], args.delay_ms[-1])
    loss = (args.loss[0], args.loss[-1])
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.a, args.b, delay, loss, args.seed)


if __name__ == "__main__":
    main()
