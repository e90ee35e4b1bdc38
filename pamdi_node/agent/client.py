"""A synchronous control client for agents (used by ``pamdi node ping`` and the orchestrator's runner)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import zmq

from pamdi_node import wire
from pamdi_node.telemetry import ntp_offset


class AgentError(RuntimeError):
    """The agent answered with an error, or did not answer in time."""


class AgentClient:
    def __init__(self, address: str, *, name: str = "orchestrator", keys: str | None = None,
                 server: str | None = None, timeout_s: float = 10.0, ctx: zmq.Context | None = None) -> None:
        self.address = address
        self.name = name
        self.timeout_s = timeout_s
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        # A unique routing id: several clients may talk to one agent, and peers use node names.
        self.sock.setsockopt(zmq.IDENTITY, f"{name}-{uuid.uuid4().hex[:8]}".encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        if keys:
            if not server:
                raise ValueError("talking Curve to an agent needs its node name (server) to find its public key")
            from pamdi_node.agent.security import secure_client

            secure_client(self.sock, keys, name, server)
        self.sock.connect(address)

    def close(self) -> None:
        self.sock.close(0)
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: str, body: dict[str, Any] | None = None, tensors: list[Any] | None = None,
                timeout_s: float | None = None, expect: str | None = None) -> wire.Message:
        """Send one message and wait for the reply with the same id (older replies are skipped)."""
        mid = wire.new_id()
        wait = self.timeout_s if timeout_s is None else timeout_s
        # Without a completed connection (agent down, or a refused Curve handshake) a DEALER cannot
        # queue the message: give up after the same timeout instead of blocking forever.
        self.sock.setsockopt(zmq.SNDTIMEO, max(1, int(wait * 1000)))
        try:
            self.sock.send_multipart(wire.encode(msg_type, self.name, body or {}, tensors or [], msg_id=mid),
                                     copy=False)
        except zmq.Again:
            raise AgentError(
                f"no answer from {self.address} to {msg_type!r}: no connection within {wait:.1f}s"
            ) from None
        deadline = time.time() + wait
        while True:
            left = deadline - time.time()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                raise AgentError(f"no answer from {self.address} to {msg_type!r} within "
                                 f"{self.timeout_s if timeout_s is None else timeout_s:.1f}s")
            reply = wire.decode(self.sock.recv_multipart(copy=False))
            if reply.id != mid:
                continue
            if reply.type == wire.ERROR:
                raise AgentError(f"{self.address}: {reply.body['reason']}")
            if expect and reply.type != expect:
                raise AgentError(f"{self.address}: expected {expect!r}, got {reply.type!r}")
            return reply

    # ---------------------------------------------------------------------------- conveniences
    def ping(self, timeout_s: float | None = None) -> dict[str, Any]:
        t0 = time.time()
        r = self.request(wire.PING, timeout_s=timeout_s, expect=wire.PONG)
        t3 = time.time()
        offset, delay = ntp_offset(t0, r.body["t_recv"], r.body["t_send"], t3)
        return {"node": r.body["node"], "state": r.body["state"], "rtt_s": t3 - t0, "offset_s": offset,
                "delay_s": delay}

    def clock_offset(self, samples: int = 8) -> dict[str, float]:
        """NTP-style: the offset (agent - local) of the sample with the smallest round trip."""
        best = min((self.ping() for _ in range(samples)), key=lambda p: p["delay_s"])
        return {"offset_s": best["offset_s"], "delay_s": best["delay_s"]}

    def configure(self, config: dict[str, Any], timeout_s: float = 300.0) -> dict[str, Any]:
        return self.request(wire.CONFIG, {"config": config}, timeout_s=timeout_s, expect=wire.CONFIG_OK).body

    def start(self, offset_s: float = 0.0, resume_from: float | None = None, beacon_at: float | None = None) -> None:
        """Start the sources; ``resume_from`` (orchestrator clock): the policy's start, for a
        restarted node that continues the schedule instead of replaying it; ``beacon_at``
        (orchestrator clock): when this node's beacons start, a period apart from then on."""
        body: dict[str, Any] = {"offset": offset_s}
        if resume_from is not None:
            body["t0"] = resume_from
        if beacon_at is not None:
            body["beacon_at"] = beacon_at
        self.request(wire.START, body, expect=wire.STARTED)

    def stats(self) -> dict[str, Any]:
        return self.request(wire.STATS, expect=wire.STATS_REPLY).body["stats"]

    def stop(self, timeout_s: float = 5.0) -> None:
        self.request(wire.STOP, timeout_s=timeout_s, expect=wire.STOPPED)

    def collect(self, outputs: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        """Task records, spans and (if asked and kept) outputs {task id: numpy array}."""
        r = self.request(wire.COLLECT, {"offset": 0}, timeout_s=60.0, expect=wire.COLLECT_REPLY)
        records = [json.loads(line) for line in bytes(r.tensors[0]).decode().splitlines() if line]
        spans = [json.loads(line) for line in bytes(r.tensors[1]).decode().splitlines() if line]
        flat: dict[str, Any] = {}
        while outputs:
            for name, arr in zip(r.body["outputs"], r.tensors[2:], strict=True):
                flat[name] = arr.copy()
            if r.body["next"] < 0:
                break
            r = self.request(wire.COLLECT, {"offset": r.body["next"]}, timeout_s=60.0, expect=wire.COLLECT_REPLY)
        outs: dict[str, Any] = {}
        parts: dict[str, dict[int, Any]] = {}
        for name, arr in flat.items():
            tid, sep, pos = name.rpartition(":")
            if sep and "/" in pos:  # one element of a tuple output
                parts.setdefault(tid, {})[int(pos.split("/")[0])] = arr
            else:
                outs[name] = arr
        for tid, elems in parts.items():
            outs[tid] = tuple(elems[i] for i in sorted(elems))
        return records, spans, outs
