"""The life of tasks inside one configured agent: decide, offer (RTC/CTC), hand off, compute, return.

``RunState`` holds everything that belongs to one run configuration and is driven by the I/O loop
(``server.Agent``) from a single thread: peer messages, executor completions and timers all arrive
there, so no state here needs a lock (the executor only sees immutable ``WorldView`` snapshots).

Custody (why no task is silently lost): a node that hands a task to a peer keeps the activation until
that peer has handed it on in turn (``release``), not merely until it arrived (``ack``). So when a
peer dies (misses its beacons) or never acks, the previous holder still has the activation and
re-decides from that boundary without the dead peer; at the source every task either gets its result
or is reported failed with a reason (compute error, unreachable source, timeout, stopped).
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pamdi_node import wire
from pamdi_node.agent.config import RunConfig, SourceConfig, task_id
from pamdi_node.agent.executor import BlockStore, Executor, QueueDetail
from pamdi_node.agent.peers import PeerTable
from pamdi_node.agent.sources import SourceThread
from pamdi_node.agent.tasks import Custody, PendingOffer, Task, WorkItem
from pamdi_node.devicetime import Timing
from pamdi_node.policies.base import OffloadRequest, Placement, Policy, TaskView, WorldView, needs_handshake
from pamdi_node.telemetry import Telemetry

log = logging.getLogger(__name__)

SendPeer = Callable[[str, list[Any]], bool]
Post = Callable[[tuple[Any, ...]], None]


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 1e300


def _tensors(x: Any) -> tuple[list[Any], bool]:
    """Frames of an activation: a tensor, or a tuple of tensors (flagged so it is rebuilt as one)."""
    if isinstance(x, tuple | list):
        return list(x), True
    return [x], False


def _activation(arrays: list[Any], is_tuple: bool) -> Any:
    import torch

    ts = [torch.from_numpy(a) for a in arrays]
    return tuple(ts) if is_tuple else ts[0]


class SourceStats:
    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.submitted = 0
        self.completed = 0
        self.failed = 0

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.cfg.samples, "submitted": self.submitted, "completed": self.completed,
                "failed": self.failed, "done": self.completed + self.failed >= self.cfg.samples}


class RunState:
    def __init__(self, cfg: RunConfig, policy: Policy, store: BlockStore, telemetry: Telemetry,
                 send_peer: SendPeer, post: Post) -> None:
        self.cfg = cfg
        self.here = cfg.node
        self.policy = policy
        self.tel = telemetry
        self.send_peer = send_peer
        self.post = post
        self.clock_offset = 0.0  # this node's clock minus the orchestrator's (set by START)
        now = time.time()
        self.peers = PeerTable(cfg, now)
        self.speed = cfg.speed
        self.allowed = cfg.allowed_blocks()
        self.sources = {s.name: s for s in cfg.sources}
        self.stats = {s.name: SourceStats(s) for s in cfg.sources if s.node == self.here}
        self.executor = Executor(store, self._computed, cfg.speed, cfg.device_time)
        self.executor.start()
        self.custody: dict[str, Custody] = {}
        self.offers: dict[str, PendingOffer] = {}
        self.rtc_inbox: list[tuple[float, OffloadRequest, str]] = []
        self.rtc_window_end: float | None = None
        # Granted (CTC) work on its way here: hop -> (est_s, expires, weight, born).
        self.reserved: dict[str, tuple[float, float, float, float]] = {}
        # List the queue task by task in the self view only for policies that use it (as the simulator).
        self.list_waiting = bool(getattr(policy, "uses_waiting", False))
        self.outstanding: dict[str, tuple[Task, float, int]] = {}  # at the origin: id -> (task, local birth, index)
        self.completed_ids: set[str] = set()
        # Results with no live route to their source yet: id -> (task, ok, reason, since).
        self.stranded: dict[str, tuple[Task, bool, str | None, float]] = {}
        self.outputs: dict[str, Any] = {}
        self.source_threads: list[SourceThread] = []
        self._seq = 0
        self._beacon_seq = 0
        self.counters: dict[str, int] = {"sent_tasks": 0, "recv_tasks": 0, "retries": 0, "denied": 0,
                                         "granted": 0, "duplicates": 0, "results_relayed": 0}
        self._snapshot = self.world()
        self._cpu0, self._wall0 = time.process_time(), time.time()

    # ------------------------------------------------------------------------------ views & clocks
    def now(self) -> float:
        """Orchestrator-aligned time (task ages are compared across nodes)."""
        return time.time() - self.clock_offset

    def own_queue(self, now: float) -> QueueDetail:
        """This node's queue (``Executor.queue_detail``), CTC reservations included: work granted to a
        peer's request counts as queued here from the grant on (the simulator has no such window)."""
        detail = self.executor.queue_detail(now, self.list_waiting)
        if not self.reserved:
            return detail
        acc = dict(detail.by_weight)
        total = detail.total_s
        waiting = list(detail.waiting)
        for est, _, weight, born in self.reserved.values():
            acc[weight] = acc.get(weight, 0.0) + est
            total += est
            if self.list_waiting:
                waiting.append((born, weight, est))
        return QueueDetail(total, tuple(sorted(acc.items())), detail.residual_s, tuple(waiting))

    def world(self, exclude: frozenset[str] = frozenset(), t: float | None = None) -> WorldView:
        """The view the policy decides on, at local time ``t`` (default now)."""
        t = time.time() if t is None else t
        w = self.peers.world(t, self.speed, self.own_queue(t), exclude)
        return WorldView(here=w.here, now_s=t - self.clock_offset, peers=w.peers, sources=w.sources, speeds=w.speeds,
                         neighbours=w.neighbours, links=w.links)

    def snapshot(self) -> WorldView:
        return self._snapshot

    def num_blocks(self, source: str) -> int:
        return self.sources[source].view().num_blocks

    def partition_end(self, source: str, block: int) -> int:
        bounds = self.sources[source].bounds
        return bounds[bisect.bisect_right(bounds, block)]

    def est_s(self, source: str, start: int, end: int) -> float:
        return math.fsum(self.sources[source].block_time_s[start:end]) / max(self.speed, 1e-9)

    def can_run(self, model: str, start: int, end: int) -> bool:
        lo, hi = self.allowed.get(model, (0, 0))
        return lo <= start < end <= hi

    # --------------------------------------------------------------------------------- sources
    def start_sources(self, t0: float) -> None:
        for st in self.stats.values():
            th = SourceThread(st.cfg, self.cfg.seed, t0, self._source_submit)
            self.source_threads.append(th)
            th.start()

    def _source_submit(self, src: SourceConfig, index: int, x: Any, born_local: float) -> None:
        self.post(("new", src, index, x, born_local))  # from the source thread to the I/O loop

    def new_task(self, src: SourceConfig, index: int, x: Any, born_local: float) -> None:
        task = Task(id=task_id(src.name, index), source=src.name, origin=self.here, model=src.model,
                    priority=src.priority, born=born_local - self.clock_offset, next_block=0, tensor=x,
                    path=[self.here], arrived=born_local)
        self.stats[src.name].submitted += 1
        self.outstanding[task.id] = (task, born_local, index)
        self.decide(task)

    # --------------------------------------------------------------------------------- decisions
    def decide(self, task: Task, since: float | None = None) -> None:
        t0 = since if since is not None else time.time()
        n = self.num_blocks(task.source)
        if task.next_block >= n:
            self.deliver_result(task, ok=True)
            return
        cands: list[Placement] = []
        try:
            world = self.world(frozenset(task.excluded))
            self._snapshot = world
            view = TaskView(task.id, task.source, task.next_block, task.born, self.here)
            for p in self.policy.rank(view, world):
                # A peer may also just relay (start == end: a multi-hop move); a relay to oneself means nothing.
                usable = (p.start < p.end) if p.node == self.here else (
                    p.node in world.peers and world.peers[p.node].alive)
                if usable and p.start == task.next_block and p.start <= p.end <= n:
                    cands.append(p)
        except Exception:
            log.exception("policy %s failed to rank task %s; running it locally", self.policy.name, task.id)
        self._try(task, cands, t0)

    def _try(self, task: Task, cands: list[Placement], t0: float) -> None:
        # The sender's own alternative, for receivers that re-check requests (pa-mdi ``recheck``).
        fallback = min((p.index for p in cands if p.node == self.here), default=math.inf)
        while cands:
            p = cands.pop(0)
            if p.node == self.here:
                if self.can_run(task.model, p.start, p.end):
                    self._span_decide(task, t0, p.node)
                    self.enqueue(task, p.start, p.end)
                    return
                continue
            if needs_handshake(self.policy, TaskView(task.id, task.source, task.next_block, task.born, self.here),
                               self._snapshot):
                hop = wire.new_id()
                body = self._task_fields(task, p.start, p.end)
                body.update(index=_finite(p.index), hop=hop, fallback=_finite(fallback))
                if self.send_peer(p.node, wire.encode(wire.RTC, self.here, body)):
                    self.offers[hop] = PendingOffer(hop, task, p.node, p.start, p.end, cands,
                                                    time.time() + self.cfg.rtc_timeout_s, t0)
                    return
                task.excluded.add(p.node)
                continue
            if self.send_task(task, p.node, p.start, p.end, wire.new_id(), t0):
                return
            task.excluded.add(p.node)
        # Nobody else: run the next partition here, or fail if this node may not run it.
        end = self.partition_end(task.source, task.next_block)
        if self.can_run(task.model, task.next_block, end):
            self._span_decide(task, t0, self.here)
            self.enqueue(task, task.next_block, end)
        else:
            self.deliver_result(task, ok=False,
                                reason=f"{self.here} cannot run blocks [{task.next_block},{end}) and no peer took them")

    def _span_decide(self, task: Task, t0: float, node: str) -> None:
        self.tel.span("decide", task.id, task.source, t0, time.time(), to=node, block=task.next_block)

    def _task_fields(self, task: Task, start: int, end: int) -> dict[str, Any]:
        return {"task": task.id, "source": task.source, "origin": task.origin, "model": task.model,
                "priority": float(task.priority), "born": float(task.born), "start": start, "end": end}

    def enqueue(self, task: Task, start: int, end: int) -> None:
        self._seq += 1
        src = self.sources[task.source]
        view = TaskView(task.id, task.source, start, task.born, self.here)
        try:
            key = tuple(self.policy.queue_key(view, self._snapshot))
        except Exception:
            log.exception("policy %s failed in queue_key; serving %s by birth", self.policy.name, task.id)
            key = (task.born,)
        n = len(src.block_time_s)
        self.executor.submit(WorkItem(task, start, end, time.time(), self._seq, self.est_s(task.source, start, end),
                                      src.priority * src.accuracy, self.est_s(task.source, end, n), key))

    # ----------------------------------------------------------------------------- hand-offs
    def send_task(self, task: Task, node: str, start: int, end: int, hop: str, t0: float) -> bool:
        ts = time.time()
        body = self._task_fields(task, start, end)
        body.update(hop=hop, path=list(task.path), sent=ts, placements=[list(p) for p in task.placements])
        tensors, is_tuple = _tensors(task.tensor)
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
        self.counters["sent_tasks"] += 1
        return True

    def _ack_deadline(self, peer: str, now: float) -> float:
        """When an ack must have come: ``ack_timeout_s`` on top of twice the time the link needs to
        deliver everything queued on it (a 3 MB activation on a 5 Mbit/s link takes ~5 s)."""
        p = self.peers.peers.get(peer)
        link_s = max(0.0, p.link_free_at - now) + 2 * p.delay_s if p is not None else 0.0
        return now + self.cfg.ack_timeout_s + 2.0 * link_s

    def on_task(self, peer: str, msg: wire.Message, t_recv: float) -> None:
        b = msg.body
        hop = b["hop"]
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
        if reason:
            self.send_peer(peer, wire.encode(wire.DENY, self.here, {"hop": hop, "task": b["task"], "reason": reason}))
            return
        self.send_peer(peer, wire.encode(wire.ACK, self.here, {"hop": hop}))
        self.counters["recv_tasks"] += 1
        task = Task(id=b["task"], source=b["source"], origin=b["origin"], model=b["model"], priority=b["priority"],
                    born=b["born"], next_block=b["start"], tensor=_activation(msg.tensors, bool(b.get("tuple"))),
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

    def on_ack(self, peer: str, hop: str) -> None:
        c = self.custody.get(hop)
        if c is None or c.peer != peer:
            return
        c.acked = True
        self._release_upstream(c.task)
        if c.kind == "result":  # the next relay (or the origin) holds the result now
            del self.custody[hop]

    def on_release(self, peer: str, hop: str) -> None:
        c = self.custody.get(hop)
        if c is not None and c.peer == peer:
            del self.custody[hop]

    def _release_upstream(self, task: Task) -> None:
        if task.upstream is not None:
            peer, hop = task.upstream
            task.upstream = None
            self.send_peer(peer, wire.encode(wire.RELEASE, self.here, {"hop": hop}))

    def on_deny(self, peer: str, hop: str, reason: str | None) -> None:
        self.counters["denied"] += 1
        offer = self.offers.pop(hop, None)
        if offer is not None and offer.node == peer:
            self._try(offer.task, offer.rest, offer.decide_start)
            return
        c = self.custody.get(hop)
        if c is not None and c.peer == peer:
            self.hop_failed(c, f"denied by {peer}: {reason}")

    def on_ctc(self, peer: str, hop: str) -> None:
        offer = self.offers.pop(hop, None)
        if offer is None or offer.node != peer:
            return  # timed out meanwhile; the peer's reservation expires on its own
        if not self.send_task(offer.task, peer, offer.start, offer.end, hop, offer.decide_start):
            offer.task.excluded.add(peer)
            self._try(offer.task, offer.rest, offer.decide_start)

    def hop_failed(self, c: Custody, why: str) -> None:
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

    # -------------------------------------------------------------------------------- RTC / CTC
    def on_rtc(self, peer: str, msg: wire.Message) -> None:
        b = msg.body
        view = TaskView(b["task"], b["source"], b["start"], b["born"], peer)
        req = OffloadRequest(view, peer, self.here, b["start"], b["end"], float(b["index"]), float(b["priority"]))
        if b["source"] not in self.sources or not self.can_run(b["model"], b["start"], b["end"]):
            self.send_peer(peer, wire.encode(wire.DENY, self.here, {"hop": b["hop"], "task": b["task"],
                                                                    "reason": "cannot run these blocks"}))
            return
        self.rtc_inbox.append((time.time(), req, b["hop"]))
        if self.rtc_window_end is None:
            self.rtc_window_end = time.time() + self.cfg.grant_window_s

    def _grant(self) -> None:
        inbox, self.rtc_inbox, self.rtc_window_end = self.rtc_inbox, [], None
        world = self.world()
        chosen: OffloadRequest | None = None
        try:
            chosen = self.policy.grant([r for _, r, _ in inbox], world)
        except Exception:
            log.exception("policy %s failed in grant", self.policy.name)
        now = time.time()
        for _, req, hop in inbox:
            if chosen is not None and req is chosen:
                est = self.est_s(req.task.source, req.start, req.end)
                weight = req.priority * self.sources[req.task.source].accuracy
                self.reserved[hop] = (est, now + max(1.0, 4 * self.cfg.rtc_timeout_s), weight, req.task.born_s)
                self.counters["granted"] += 1
                self.send_peer(req.sender, wire.encode(wire.CTC, self.here, {"hop": hop, "task": req.task.task_id}))
            else:
                self.send_peer(req.sender, wire.encode(wire.DENY, self.here, {"hop": hop, "task": req.task.task_id,
                                                                              "reason": "another request won"}))

    # ---------------------------------------------------------------------------- executor results
    def computed(self, item: WorkItem, out: Any, timing: Timing, err: str | None) -> None:
        try:
            self._after_compute(item, out, timing, err)
        finally:
            self.executor.decided()  # the executor holds its next item until this decision is made

    def _after_compute(self, item: WorkItem, out: Any, timing: Timing, err: str | None) -> None:
        task = item.task
        t0, t1 = timing.started, timing.released
        self.tel.span("queue", task.id, task.source, item.enqueued, t0, blocks=[item.start, item.end])
        # model_s: what the simulator charges; host_s: what it really took here; overrun_s > 0 when
        # the host could not keep up with the modelled device (profile device time).
        self.tel.span("compute", task.id, task.source, t0, t1, blocks=[item.start, item.end],
                      model_s=round(item.est_s, 6), host_s=round(timing.host_s, 6),
                      overrun_s=round(timing.overrun_s, 6))
        if err is not None:
            self.deliver_result(task, ok=False, reason=f"{self.here}: {err}")
            return
        ref = self.est_s(task.source, item.start, item.end) * self.speed
        if self.cfg.measure_speed and ref > 0 and t1 > t0:  # re-measured speed (EWMA), what the beacons advertise
            measured = ref / (t1 - t0)  # under profile device time: the modelled speed, as it should
            self.speed = min(max(0.7 * self.speed + 0.3 * measured, 1e-3), 1e4)
        task.tensor = out
        task.next_block = item.end
        task.placements.append([self.here, item.start, item.end])
        self.decide(task, since=t1)

    def _computed(self, item: WorkItem, out: Any, timing: Timing, err: str | None) -> None:
        self.post(("computed", item, out, timing, err))  # executor thread -> I/O loop

    # ---------------------------------------------------------------------------------- results
    def deliver_result(self, task: Task, ok: bool, reason: str | None = None) -> None:
        if task.origin == self.here:
            self.complete(task, ok, reason, task.tensor if ok else None, task.placements, time.time())
            self._release_upstream(task)
            return
        t0 = time.time()
        now = t0
        nxt = None
        if task.origin in self.peers.peers and self.peers.alive(task.origin, now) and task.origin not in task.excluded:
            nxt = task.origin
        else:
            # Walk back along the nodes that held the task before this node first did: each relay
            # picks a strictly earlier node, so results never loop.
            first = task.path.index(self.here) if self.here in task.path else len(task.path)
            for node in reversed(task.path[:first]):
                if node not in task.excluded and self.peers.alive(node, now):
                    nxt = node
                    break
        if nxt is None:
            # Keep it and retry on the timer (a peer that just restarted may not have beaconed yet);
            # after task_timeout_s it is dropped and the source reports the task failed (timeout).
            if task.id not in self.stranded:
                log.warning("%s: no live route back to %s for %s yet; will retry", self.here, task.origin, task.id)
                self.stranded[task.id] = (task, ok, reason, now)
            return
        hop = wire.new_id()
        body = {"task": task.id, "source": task.source, "origin": task.origin, "hop": hop, "ok": ok,
                "path": list(task.path), "placements": [list(p) for p in task.placements], "done": now}
        if reason:
            body["reason"] = reason[: wire.MAX_STR]
        tensors: list[Any] = []
        if ok:
            tensors, is_tuple = _tensors(task.tensor)
            if is_tuple:
                body["tuple"] = True
        frames = wire.encode(wire.RESULT, self.here, body, tensors)
        if not self.send_peer(nxt, frames):
            task.excluded.add(nxt)
            self.deliver_result(task, ok, reason)
            return
        self.tel.span("serialize", task.id, task.source, t0, time.time(), to=nxt, result=True)
        self.peers.on_sent(nxt, sum(wire.frame_len(f) for f in frames[1:]), time.time())
        ack_by = self._ack_deadline(nxt, time.time())
        c = Custody(hop, nxt, task, "result", 0, 0, time.time(), ack_by=ack_by, ok=ok, reason=reason)
        self.custody[hop] = c

    def on_result(self, peer: str, msg: wire.Message, t_recv: float) -> None:
        b = msg.body
        self.send_peer(peer, wire.encode(wire.ACK, self.here, {"hop": b["hop"]}))
        self.tel.span("result", b["task"], b["source"], b["done"], t_recv, peer=peer)
        ok = bool(b["ok"]) and len(msg.tensors) >= 1
        tensor = _activation(msg.tensors, bool(b.get("tuple"))) if ok else None
        if b["origin"] == self.here:
            out = self.outstanding.get(b["task"])
            if out is None:
                self.counters["duplicates"] += 1
                return
            self.complete(out[0], ok, b.get("reason"), tensor, b["placements"], t_recv)
            return
        src = self.sources.get(b["source"])
        if src is None:
            return
        self.counters["results_relayed"] += 1
        task = Task(id=b["task"], source=b["source"], origin=b["origin"], model=src.model, priority=src.priority,
                    born=0.0, next_block=len(src.block_time_s), tensor=tensor, path=list(b["path"]),
                    placements=list(b["placements"]), upstream=(peer, b["hop"]))
        self.deliver_result(task, ok, b.get("reason"))

    def complete(self, task: Task, ok: bool, reason: str | None, tensor: Any, placements: list[Any],
                 t_done: float) -> None:
        entry = self.outstanding.pop(task.id, None)
        if entry is None:
            self.counters["duplicates"] += 1
            return
        _, born_local, index = entry
        st = self.stats[task.source]
        if ok:
            st.completed += 1
            if self.cfg.keep_outputs and tensor is not None:
                self.outputs[task.id] = tensor
        else:
            st.failed += 1
        self.completed_ids.add(task.id)
        self.tel.record({
            "task": task.id, "source": task.source, "index": index, "model": task.model,
            "priority": task.priority, "status": "completed" if ok else "failed", "reason": reason,
            "born": born_local, "done": t_done, "latency_s": t_done - born_local,
            "placements": [list(p) for p in placements], "nodes": len({p[0] for p in placements}),
        })

    # ------------------------------------------------------------------------------------ timers
    def beacon_body(self, now: float) -> dict[str, Any]:
        """What a beacon says: the simulator's snapshot (queue seconds, residual, per-weight queue)."""
        self._beacon_seq += 1
        q = self.own_queue(now)
        return {"speed": float(self.speed), "queue_s": float(q.total_s), "seq": self._beacon_seq,
                "by_weight": [[w, s] for w, s in q.by_weight], "residual_s": float(q.residual_s)}

    def beacon(self) -> None:
        body = self.beacon_body(time.time())
        for name in self.peers.peers:
            self.send_peer(name, wire.encode(wire.BEACON, self.here, body))
        self._snapshot = self.world()

    def tick(self) -> None:
        """Timers: RTC windows, offer and ack timeouts, dead peers, reservations, task timeouts."""
        now = time.time()
        if self.rtc_window_end is not None and now >= self.rtc_window_end:
            self._grant()
        for hop, offer in list(self.offers.items()):
            if now >= offer.deadline:
                del self.offers[hop]
                offer.task.excluded.add(offer.node)
                self._try(offer.task, offer.rest, offer.decide_start)
        dead = set(self.peers.newly_dead(now))
        for name in dead:
            log.warning("%s: peer %s missed its beacons; dropped from the candidates", self.here, name)
        for c in list(self.custody.values()):
            if c.hop not in self.custody:
                continue
            if c.peer in dead or not self.peers.alive(c.peer, now):
                self.hop_failed(c, f"peer {c.peer} is dead (no beacon for {self.cfg.dead_after:.2f}s)")
            elif not c.acked and now > c.ack_by:
                self.hop_failed(c, f"no ack from {c.peer} within {c.ack_by - c.sent:.2f}s")
        for tid, (task, ok, reason, since) in list(self.stranded.items()):
            del self.stranded[tid]
            if now - since > self.cfg.task_timeout_s:
                log.error("%s: no route back to %s for %s; dropped", self.here, task.origin, tid)
                self.tel.span("lost", tid, task.source, since, now, reason="no route to the source")
                continue
            task.excluded.clear()  # peers may have come back
            self.deliver_result(task, ok, reason)
            if tid in self.stranded:  # still no route: keep the original time
                self.stranded[tid] = (task, ok, reason, since)
        for hop, (_, expires, _, _) in list(self.reserved.items()):
            if now >= expires:
                del self.reserved[hop]
        for task, born_local, _ in list(self.outstanding.values()):
            if now - born_local > self.cfg.task_timeout_s:
                self.complete(task, False, f"timeout: no result after {self.cfg.task_timeout_s:.1f}s", None,
                              task.placements, now)

    def next_deadline(self) -> float:
        ds = [o.deadline for o in self.offers.values()]
        if self.rtc_window_end is not None:
            ds.append(self.rtc_window_end)
        return min(ds, default=math.inf)

    # ------------------------------------------------------------------------------------ ending
    def stop(self, reason: str = "stopped before completion") -> None:
        for th in self.source_threads:
            th.stopped.set()
        now = time.time()
        for task, _, _ in list(self.outstanding.values()):
            self.complete(task, False, reason, None, task.placements, now)
        self.executor.stop()

    def stats_dict(self) -> dict[str, Any]:
        now = time.time()
        return {"sources": {k: v.as_dict() for k, v in self.stats.items()}, "queue": len(self.executor),
                "custody": len(self.custody), "offers": len(self.offers), "speed": self.speed,
                "peers": self.peers.summary(now), "ran": self.executor.ran, "busy_s": self.executor.busy_s,
                "host_busy_s": self.executor.host_busy_s, "device_time": self.executor.device_time,
                "overruns": self.executor.overruns, "overrun_s": self.executor.overrun_s,
                "decision_waits": self.executor.decision_waits,
                # CPU this agent process used since the run was configured (all threads): with the
                # wall time it says how much of the host the emulation really took.
                "cpu_s": time.process_time() - self._cpu0, "wall_s": now - self._wall0,
                **self.counters}
