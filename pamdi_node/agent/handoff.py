"""Hand-offs between agents: tasks out and in, their custody (ack, release, deny), failed hops, and
the receiver's side of RTC/CTC.

Custody (why no task is silently lost): a node that hands a task to a peer keeps the activation until
that peer has handed it on in turn (``release``), not merely until it arrived (``ack``). So when a
peer dies (misses its beacons) or never acks, the previous holder still has the activation and
re-decides from that boundary without the dead peer. Results travel back the same way: a relay
keeps a result until the next relay (or the origin, once it has recorded it) releases it.

``HandoffMixin`` is one part of ``flow.RunState`` (the state it uses is set up there).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from pamdi_node import wire
from pamdi_node.agent.tasks import Custody, Task, activation, finite, tensors_of
from pamdi_node.policies.types import OffloadRequest, TaskView
from pamdi_node.worker import Reservation, choose_grant, reservation_expiry

if TYPE_CHECKING:
    from pamdi_node.agent.flow import RunState

log = logging.getLogger(__name__)

# Work a node holds from its peers is bounded: beyond this many queued partitions a task is denied
# (its sender keeps it and decides again), so no peer can make an agent queue without limit.
MAX_QUEUED = 4096
# Hand-off ids seen lately, per kind: a replayed TASK or RESULT is acknowledged again (the sender may
# have missed the first ACK) but not run or forwarded twice.
MAX_SEEN_HOPS = 65536


def rtc_fields(req: OffloadRequest) -> dict[str, float]:
    """What an RTC body carries of the request (``worker.offload_request``) beyond the task's fields."""
    out = {"index": finite(req.index), "fallback": finite(req.fallback_index)}
    if req.scored_s is not None:
        out["scored"] = float(req.scored_s)
    return out


def rtc_request(body: dict[str, Any], sender: str, receiver: str) -> OffloadRequest:
    """The request an RTC body stands for, as the sender built it: the receiver weighs exactly what
    the simulator's receiver is handed (the sender's fallback included: a re-checking policy denies
    an offer the sender does better keeping)."""
    view = TaskView(body["task"], body["source"], body["start"], body["born"], sender)
    return OffloadRequest(view, sender, receiver, body["start"], body["end"], float(body["index"]),
                          float(body["priority"]), fallback_index=float(body.get("fallback", math.inf)),
                          scored_s=None if body.get("scored") is None else float(body["scored"]))


class HandoffMixin:
    def first_time(self: RunState, kind: str, peer: str, hop: str) -> bool:
        """Whether hand-off ``hop`` of ``kind`` from ``peer`` is new (bounded memory of the old ones)."""
        key = (kind, peer, hop)
        if key in self.seen_hops:
            self.counters["replays"] += 1
            return False
        self.seen_hops[key] = None
        if len(self.seen_hops) > MAX_SEEN_HOPS:
            self.seen_hops.pop(next(iter(self.seen_hops)))
        return True

    def send_task(self: RunState, task: Task, node: str, start: int, end: int, hop: str, t0: float) -> bool:
        ts = time.time()
        body = self._task_fields(task, start, end)
        body.update(hop=hop, path=list(task.path), sent=ts, placements=[list(p) for p in task.placements])
        tensors, is_tuple = tensors_of(task.tensor)
        if is_tuple:
            body["tuple"] = True
        frames = wire.encode(wire.TASK, self.here, body, tensors)
        ts_end = time.time()
        if not self.send_peer(node, frames):
            return False
        nbytes = sum(wire.frame_len(f) for f in frames[1:])
        self.tel.span("serialize", task.id, task.source, ts, ts_end, to=node, bytes=nbytes)
        self.peers.on_sent(node, nbytes, ts_end)
        ack_by = self._ack_deadline(node, ts_end)
        self._span_decide(task, t0, node)
        self.custody[hop] = Custody(hop, node, task, "task", start, end, time.time(), ack_by=ack_by)
        task.sent_away = True
        self.counters["sent_tasks"] += 1
        return True

    def _in_flight_from_here(self: RunState, tid: str) -> bool:
        out = self.outstanding.get(tid)
        return out is not None and out[0].sent_away

    def _ack_deadline(self: RunState, peer: str, now: float) -> float:
        """When an ack must have come: ``ack_timeout_s`` on top of twice the time the link needs to
        deliver everything queued on it (a 3 MB activation on a 5 Mbit/s link takes ~5 s)."""
        p = self.peers.peers.get(peer)
        link_s = max(0.0, p.link_free_at - now) + 2 * p.delay_s if p is not None else 0.0
        return now + self.cfg.ack_timeout_s + 2.0 * link_s

    def on_task(self: RunState, peer: str, msg: wire.Message, t_recv: float) -> None:
        b = msg.body
        hop = b["hop"]
        if not self.first_time("task", peer, hop):
            self.send_peer(peer, wire.encode(wire.ACK, self.here, {"hop": hop}))
            return
        self.reserved.pop(hop, None)
        src = self.sources.get(b["source"])
        reason = None
        if src is None or src.model != b["model"]:
            reason = f"unknown source {b['source']!r} / model {b['model']!r}"
        elif b["end"] > src.bounds[-1] or b["start"] > b["end"]:
            reason = f"block range [{b['start']},{b['end']}) is outside {b['model']}'s {src.bounds[-1]} blocks"
        elif b["end"] > b["start"] and not self.can_run(b["model"], b["start"], b["end"]):
            reason = f"{self.here} may not run {b['model']} blocks [{b['start']},{b['end']})"
        elif not msg.tensors or (len(msg.tensors) > 1 and not b.get("tuple")):
            reason = f"a task carries one tensor (or a tuple flagged 'tuple'), got {len(msg.tensors)}"
        elif b["origin"] == self.here and not self._in_flight_from_here(b["task"]):
            # A task of this node that it never handed out cannot come back from a peer: taking it
            # would complete the real task with whatever the peer computed.
            reason = f"{b['task']} is not a task of {self.here} in flight"
        elif len(self.executor) >= MAX_QUEUED:
            reason = f"queue full ({MAX_QUEUED} partitions)"
        if reason:
            self.send_peer(peer, wire.encode(wire.DENY, self.here, {"hop": hop, "task": b["task"], "reason": reason}))
            return
        self.send_peer(peer, wire.encode(wire.ACK, self.here, {"hop": hop}))
        self.counters["recv_tasks"] += 1
        task = Task(id=b["task"], source=b["source"], origin=b["origin"], model=b["model"], priority=b["priority"],
                    born=b["born"], next_block=b["start"], tensor=activation(msg.tensors, bool(b.get("tuple"))),
                    path=[*b["path"], self.here], placements=list(b.get("placements", [])), upstream=(peer, hop),
                    arrived=t_recv)
        now = time.time()
        self.tel.span("transfer", task.id, task.source, b["sent"], t_recv, peer=peer,
                      bytes=int(sum(a.nbytes for a in msg.tensors)), block=b["start"])
        self.tel.span("recv", task.id, task.source, t_recv, now, peer=peer)
        if b["end"] == b["start"]:  # relay: decide the next step from here
            self.decide(task, since=t_recv)
        else:
            self.enqueue(task, b["start"], b["end"])

    def on_ack(self: RunState, peer: str, hop: str) -> None:
        c = self.custody.get(hop)
        if c is None or c.peer != peer:
            return
        c.acked = True
        self._release_upstream(c.task)
        # Custody (tasks and results alike) lasts until the next hop's RELEASE, which it sends once
        # its own next hop has acknowledged (or, at the origin, once the result is recorded): a relay
        # killed between ACK and forwarding is found dead and the hand-off is redone, not lost.

    def on_release(self: RunState, peer: str, hop: str) -> None:
        c = self.custody.get(hop)
        if c is not None and c.peer == peer:
            del self.custody[hop]

    def _release_upstream(self: RunState, task: Task) -> None:
        if task.upstream is not None:
            peer, hop = task.upstream
            task.upstream = None
            self.send_peer(peer, wire.encode(wire.RELEASE, self.here, {"hop": hop}))

    def on_deny(self: RunState, peer: str, hop: str, reason: str | None) -> None:
        self.counters["denied"] += 1
        offer = self.offers.pop(hop, None)
        if offer is not None and offer.node == peer:
            self.step(offer.task, offer.plan, offer.decide_start)
            return
        c = self.custody.get(hop)
        if c is not None and c.peer == peer:
            self.hop_failed(c, f"denied by {peer}: {reason}")

    def on_ctc(self: RunState, peer: str, hop: str) -> None:
        offer = self.offers.pop(hop, None)
        if offer is None or offer.node != peer:
            return  # timed out meanwhile; the peer's reservation expires on its own
        if not self.send_task(offer.task, peer, offer.start, offer.end, hop, offer.decide_start):
            offer.task.excluded.add(peer)
            self.step(offer.task, offer.plan, offer.decide_start)

    def hop_failed(self: RunState, c: Custody, why: str) -> None:
        """A hand-off to ``c.peer`` failed (dead, silent or refusing): take the task back."""
        self.custody.pop(c.hop, None)
        self.counters["retries"] += 1
        log.warning("%s: hand-off of %s to %s failed (%s); re-deciding", self.here, c.task.id, c.peer, why)
        c.task.excluded.add(c.peer)
        self.tel.span("retry", c.task.id, c.task.source, c.sent, time.time(), peer=c.peer, reason=why)
        if c.kind == "task":
            c.task.next_block = c.start
            self.decide(c.task)
        else:
            self.deliver_result(c.task, ok=c.ok, reason=c.reason)

    # RTC / CTC, the receiver's side
    def on_rtc(self: RunState, peer: str, msg: wire.Message) -> None:
        b = msg.body
        req = rtc_request(b, peer, self.here)
        if b["source"] not in self.sources or not self.can_run(b["model"], b["start"], b["end"]):
            self.send_peer(peer, wire.encode(wire.DENY, self.here, {"hop": b["hop"], "task": b["task"],
                                                                    "reason": "cannot run these blocks"}))
            return
        self.grants.add((req, b["hop"]), time.time(), self.cfg.grant_window_s)

    def grant(self: RunState) -> None:
        """The RTC window closed: clear one request (CTC, with a reservation here), deny the others."""
        inbox = self.grants.close()
        chosen = choose_grant(self.policy, [r for r, _ in inbox], self.world())
        now = time.time()
        for req, hop in inbox:
            if chosen is not None and req is chosen:
                est = self.est_s(req.task.source, req.start, req.end)
                weight = req.priority * self.sources[req.task.source].accuracy
                self.reserved[hop] = Reservation(est, weight, req.task.born_s,
                                                 reservation_expiry(now, self.cfg.rtc_timeout_s))
                self.counters["granted"] += 1
                self.send_peer(req.sender, wire.encode(wire.CTC, self.here, {"hop": hop, "task": req.task.task_id}))
            else:
                why = "another request won" if chosen is not None else "the sender does better keeping it"
                self.send_peer(req.sender, wire.encode(wire.DENY, self.here, {"hop": hop, "task": req.task.task_id,
                                                                              "reason": why}))
