"""The life of tasks inside one configured agent: decide, offer (RTC/CTC), hand off, compute, return.

``RunState`` holds everything that belongs to one run configuration and is driven by the I/O loop
(``server.Agent``) from a single thread: peer messages, executor completions and timers all arrive
there, so no state here needs a lock (the executor only sees immutable ``WorldView`` snapshots).

The decisions themselves are the worker core's (``pamdi_node.worker``: the plan of one decision,
its next step, the grant window, the queue ledger), the same code the simulator drives; this module
drives it with sockets, threads and the wall clock. Hand-offs and custody are in ``handoff.py``,
results on their way back in ``results.py``. At the source every task either gets its result or is
reported failed with a reason (compute error, unreachable source, timeout, stopped).
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pamdi_node import wire
from pamdi_node.agent.config import AgentSource, RunConfig, task_id
from pamdi_node.agent.executor import BlockStore, Executor
from pamdi_node.agent.handoff import HandoffMixin, rtc_fields
from pamdi_node.agent.peers import PeerTable
from pamdi_node.agent.ratelog import RateLimitedLog
from pamdi_node.agent.results import ResultsMixin
from pamdi_node.agent.sources import SourceThread
from pamdi_node.agent.tasks import Custody, PendingOffer, Task, WorkItem
from pamdi_node.devicetime import Timing
from pamdi_node.policies.types import OffloadRequest, Policy, TaskView, WorldView
from pamdi_node.telemetry import Telemetry
from pamdi_node.worker import (
    GrantWindow,
    Plan,
    QueueDetail,
    Reservation,
    make_plan,
    next_step,
    offload_request,
    with_reservations,
)

log = logging.getLogger(__name__)

SendPeer = Callable[[str, list[Any]], bool]
Post = Callable[[tuple[Any, ...]], None]


class SourceStats:
    def __init__(self, cfg: AgentSource) -> None:
        self.cfg = cfg
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.thread: SourceThread | None = None

    def as_dict(self) -> dict[str, Any]:
        # Items a restarted node skipped (due before it came back) are another self's to report.
        skipped = self.thread.skipped if self.thread is not None else 0
        return {"samples": self.cfg.samples, "submitted": self.submitted, "completed": self.completed,
                "failed": self.failed, "skipped": skipped,
                "done": self.completed + self.failed + skipped >= self.cfg.samples}


class RunState(HandoffMixin, ResultsMixin):
    def __init__(self, cfg: RunConfig, policy: Policy, store: BlockStore, telemetry: Telemetry,
                 send_peer: SendPeer, post: Post) -> None:
        self.cfg = cfg
        self.here = cfg.node
        self.policy = policy
        self.tel = telemetry
        self.send_peer = send_peer
        self.post = post
        self.clock_offset = 0.0  # this node's clock minus the orchestrator's (set by START)
        self.beacon_anchor: float | None = None  # this node's beacon phase on its clock (set by START)
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
        self.grants: GrantWindow[tuple[OffloadRequest, str]] = GrantWindow()  # RTCs to answer: (request, hop)
        # Granted (CTC) work on its way here, by hop.
        self.reserved: dict[str, Reservation] = {}
        # List the queue task by task in the self view only for policies that use it (as the simulator).
        self.list_waiting = bool(policy.uses_waiting)
        self.outstanding: dict[str, tuple[Task, float, int]] = {}  # at the origin: id -> (task, local birth, index)
        self.completed_ids: set[str] = set()
        # Results with no live route to their source yet: id -> (task, ok, reason, since).
        self.stranded: dict[str, tuple[Task, bool, str | None, float]] = {}
        self.stranded_bytes = 0
        self._log_stranded = RateLimitedLog(log, logging.WARNING)
        self.outputs: dict[str, Any] = {}
        self.source_threads: list[SourceThread] = []
        self._seq = 0
        self._beacon_seq = 0
        self.counters: dict[str, int] = {"sent_tasks": 0, "recv_tasks": 0, "retries": 0, "denied": 0,
                                         "granted": 0, "duplicates": 0, "results_relayed": 0,
                                         "stranded_dropped": 0, "replays": 0, "forged_results": 0}
        self.seen_hops: dict[tuple[str, str, str], None] = {}  # (kind, peer, hop), oldest first
        self._snapshot = self.world()
        self._cpu0, self._wall0 = time.process_time(), time.time()

    # ------------------------------------------------------------------------------ views & clocks
    def now(self) -> float:
        """Orchestrator-aligned time (task ages are compared across nodes)."""
        return time.time() - self.clock_offset

    def own_queue(self, now: float) -> QueueDetail:
        """This node's queue (``Executor.queue_detail``), CTC reservations included: work granted to a
        peer's request counts as queued here from the grant on (the simulator's workers do the same)."""
        return with_reservations(self.executor.queue_detail(now, self.list_waiting), self.reserved.values(),
                                 self.list_waiting)

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
    def start_sources(self, t0: float, resume: bool = False) -> None:
        """Run every source's schedule from ``t0``; ``resume``: items already due are skipped (they
        were due while this node was down, and its earlier self handled the ones before)."""
        for st in self.stats.values():
            th = SourceThread(st.cfg, self.cfg.seed, t0, self._source_submit, skip_due=resume)
            st.thread = th
            self.source_threads.append(th)
            th.start()

    def _source_submit(self, src: AgentSource, index: int, x: Any, born_local: float) -> None:
        self.post(("new", src, index, x, born_local))  # from the source thread to the I/O loop

    def new_task(self, src: AgentSource, index: int, x: Any, born_local: float) -> None:
        task = Task(id=task_id(src.name, index), source=src.name, origin=self.here, model=src.model,
                    priority=src.priority, born=born_local - self.clock_offset, next_block=0, tensor=x,
                    path=[self.here], arrived=born_local)
        self.stats[src.name].submitted += 1
        self.outstanding[task.id] = (task, born_local, index)
        self.decide(task)

    # --------------------------------------------------------------------------------- decisions
    def decide(self, task: Task, since: float | None = None) -> None:
        """Decide where the task's next partition runs (the worker core's plan) and start on it."""
        t0 = since if since is not None else time.time()
        n = self.num_blocks(task.source)
        if task.next_block >= n:
            self.deliver_result(task, ok=True)
            return
        world = self.world(frozenset(task.excluded))
        self._snapshot = world
        view = TaskView(task.id, task.source, task.next_block, task.born, self.here)
        self.step(task, make_plan(self.policy, view, world, n, self.partition_end(task.source, task.next_block)), t0)

    def step(self, task: Task, plan: Plan, t0: float) -> None:
        """Carry out the plan's next step; a step that cannot go out (the send failed, the peer
        failed this task before) moves on to the one after it."""
        def can_run(start: int, end: int) -> bool:
            return self.can_run(task.model, start, end)

        while True:
            step = next_step(plan, can_run)
            if step.action == "run":
                self._span_decide(task, t0, self.here)
                self.enqueue(task, step.start, step.end)
                return
            if step.action == "fail":
                self.deliver_result(task, ok=False, reason=step.reason)
                return
            if step.node in task.excluded:
                continue
            if step.action == "offer":
                hop = wire.new_id()
                body = self._task_fields(task, step.start, step.end)
                body.update(rtc_fields(offload_request(plan, step, self.here, task.priority)), hop=hop)
                if self.send_peer(step.node, wire.encode(wire.RTC, self.here, body)):
                    self.offers[hop] = PendingOffer(hop, task, step.node, step.start, step.end, plan,
                                                    time.time() + self.cfg.rtc_timeout_s, t0)
                    return
            elif self.send_task(task, step.node, step.start, step.end, wire.new_id(), t0):
                return
            task.excluded.add(step.node)

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
        if self.grants.closes_at is not None and now >= self.grants.closes_at:
            self.grant()
        for hop, offer in list(self.offers.items()):
            if now >= offer.deadline:
                del self.offers[hop]
                offer.task.excluded.add(offer.node)
                self.step(offer.task, offer.plan, offer.decide_start)
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
        for tid in list(self.stranded):
            if tid not in self.stranded:
                continue  # dropped over the limit while others were retried
            task, ok, reason, since = self._unstrand(tid)
            if now - since > self.cfg.task_timeout_s:
                self._log_stranded("%s: no route back to %s for %s; dropped", self.here, task.origin, tid)
                self.tel.span("lost", tid, task.source, since, now, reason="no route to the source")
                continue
            task.excluded.clear()  # peers may have come back
            self.deliver_result(task, ok, reason, stranded_since=since)  # still no route: held again, quietly
        for hop, r in list(self.reserved.items()):
            if now >= r.expires:
                del self.reserved[hop]
        for task, born_local, _ in list(self.outstanding.values()):
            if now - born_local > self.cfg.task_timeout_s:
                self.complete(task, False, f"timeout: no result after {self.cfg.task_timeout_s:.1f}s", None,
                              task.placements, now)

    def next_deadline(self) -> float:
        ds = [o.deadline for o in self.offers.values()]
        if self.grants.closes_at is not None:
            ds.append(self.grants.closes_at)
        return min(ds, default=math.inf)

    # ------------------------------------------------------------------------------------ ending
    def stop(self, reason: str = "stopped before completion") -> None:
        for th in self.source_threads:
            th.stopped.set()
        now = time.time()
        for task, _, _ in list(self.outstanding.values()):
            self.complete(task, False, reason, None, task.placements, now)
        self.executor.stop()

    def start(self, body: dict[str, Any]) -> None:
        """START from the orchestrator: its clock offset, and the sources from now, or (a restart,
        ``t0`` given) from the run's start on this clock, the schedule going on where it was."""
        self.clock_offset = float(body.get("offset", 0.0))
        if "beacon_at" in body:
            self.beacon_anchor = float(body["beacon_at"]) + self.clock_offset
        if "t0" in body:
            self.start_sources(float(body["t0"]) + self.clock_offset, resume=True)
        else:
            self.start_sources(time.time())

    def next_beacon(self, now: float) -> float:
        """When to beacon after ``now``: once started, on this node's grid (its phase from the
        orchestrator + whole periods: ``pamdi_node.arrivals.beacon_phases``, what the simulator
        uses), so beacons neither drift nor fall in step with the other agents'; before, a period on."""
        period = self.cfg.beacon_period_s
        if self.beacon_anchor is None:
            return now + period
        return self.beacon_anchor + max(0, math.floor((now - self.beacon_anchor) / period) + 1) * period

    def on_peer(self, msg: wire.Message, t_recv: float) -> bool:
        """Handle a checked message from a neighbour; True when it was a beacon that brought a peer
        back up (the agent logs it)."""
        t, b, src = msg.type, msg.body, msg.src
        if t == wire.BEACON:
            return bool(self.peers.on_beacon(src, b, time.time()))
        self.peers.heard_from(src, time.time())
        if t == wire.TASK:
            self.on_task(src, msg, t_recv)
        elif t == wire.ACK:
            self.on_ack(src, b["hop"])
        elif t == wire.RELEASE:
            self.on_release(src, b["hop"])
        elif t == wire.RTC:
            self.on_rtc(src, msg)
        elif t == wire.CTC:
            self.on_ctc(src, b["hop"])
        elif t == wire.DENY:
            self.on_deny(src, b["hop"], b.get("reason"))
        elif t == wire.RESULT:
            self.on_result(src, msg, t_recv)
        return False

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
                "stranded": len(self.stranded), "stranded_bytes": self.stranded_bytes,
                **self.counters}
