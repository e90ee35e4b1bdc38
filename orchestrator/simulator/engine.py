"""The discrete-event engine: a hand-written ``heapq`` event loop.

Why not simpy: simpy's process/generator machinery costs ~10-20 µs per event in Python; the
benchmark (200 nodes, 20 sources, 10,000 tasks) needs well over a million events (compute,
transfers, beacons, RTC/CTC) in seconds. Here an event is a tuple ``(time, seq, fn, args)`` and
the loop is a plain ``heappop``/call; ``seq`` makes ties deterministic (FIFO in scheduling order).

Model (all times in seconds):

- Workers compute one placement (a block range) at a time, non-preemptively, taking the profiled
  time / speed. Waiting jobs are served by ``policy.queue_key`` (keys are evaluated at enqueue
  time with a world holding only the worker itself; see the PA-MDI docstring for why its keys
  are clock-independent). The FIFO baselines key on the task's birth: FIFO at the task level.
- Links: one serialization queue per direction (FIFO); ``bytes*8 / (rate * LINK_GOODPUT_FACTOR)``
  then the one-way delay, plus ``SimOptions.message_cost_s`` per data/result hop (pure latency:
  encode/decode and socket overhead; it does not hold the link). Control messages (RTC/CTC/DENY)
  are 64 bytes and bypass the data queue (they would be tiny frames interleaved with bulk TCP).
  Beacons cost no bandwidth.
- Time-varying links (``LinkConfig.schedule``, from a spec link's radio ``scenario``): the link is
  what the netns backend makes of it: the scenario's points from t = 0 (the spec link's own
  rate/delay/loss are not used on the wire), each point in force from its ``t_s`` on, both
  directions, repeating every period when the scenario loops (``Scenario.at``). The netns backend
  polls the scenario every 50 ms and starts its clock when the agents are up; here each point
  applies at its exact time and scenario time = simulated time + ``SimOptions.scenario_offset_s``.
  Serialization is piecewise like an htb/tbf shaper's: bits still queued or being sent when the
  rate changes go at the new rate. The delay is the one in force when each bit leaves: a message
  arrives when its last bit has (the latest of ``t + delay(t)`` at its last bit and at every change
  it straddled), never before the message ahead of it on the same direction (a FIFO delay line,
  in-order TCP). Loss has no timing model here (as before); it only shows in the policies' view.
- Jitter (``LinkConfig.jitter_s``, constant links only): every message on the direction (data,
  result, control, beacon) waits delay ± jitter (uniform) after its last bit, never before the
  message ahead of it: the agents' delay line and netem's model (``pamdi_node.jitter``), seeded per
  direction as the agents seed theirs. The receiver's ACK of each task/result hop is sent back on
  such a link (a draw, and the next message that way waits behind it); RELEASEs, which follow a
  task's end, are not.
- Beacons: every worker snapshots (queue seconds, residual, per-weight queue) every period, from the
  phase its agent gets for the seed (``pamdi_node.arrivals.beacon_phases``). Queue seconds count
  what the tasks present still need to finish their models there (queued job + the rest of the
  model, at the worker's speed): with per-partition jobs a task that has landed on a worker mostly
  stays, so counting only the queued partition would hide most of the committed work. The residual
  is only what is left of the partition in service (all a waiting task of higher priority sits out);
  the rest of that task's model counts in its weight's queue. Every worker also knows the graph's
  link rates and delays (``WorldView.links``, from the run configuration) for planners. Rates,
  delays and success probabilities in the policies' view (``WorldView.links``,
  ``PeerView.rate_bps/delay_s/success``) are the configured ones even on scenario links, because
  that is all the agents get: the orchestrator sends them the spec link's
  ``rate_mbit/delay_ms/loss`` once in the run config (``runner.build_configs``) and the netns
  backend changes tc in place without telling them. The sender's link backlog estimate likewise
  counts what it queued at the configured rate (the agent's ``PeerTable.on_sent``). A neighbour sees
  the latest snapshot older than the link delay (stale views); no snapshot for ``base.dead_after_s``
  = dead (not a candidate).
- At every boundary the holder asks ``policy.rank``; it tries placements in order: itself (queue
  locally), or a neighbour (after an RTC/CTC round trip when ``policy.handshake``, or per task
  ``policy.needs_handshake``; a DENY or a timeout moves on to the next placement; exhausting the
  list computes the next partition locally). ``start == end`` placements are relays (multi-hop moves without compute).
  A granted (CTC) range counts in the receiver's queue from the grant until it arrives (or the
  grant expires), as in the agents. Control messages travel in band: an RTC (or the CTC/DENY
  back) queues on the link behind the activations and results already queued there, as it does on
  the agents' one connection per peer.
- Decision cost (``SimOptions.decision_cost_s``): after a worker computes a partition, it stays
  occupied that long before the boundary decision is taken (or the result sent back) and before it
  starts its next job (the agent's executor holds its next item until the I/O loop has decided and
  sent the task or result on). A task's first decision at its source and relay decisions are not
  charged.
- After the last block the result goes back to the source along the cheapest path (serialization
  + delay per hop).
- Failures: a failed worker loses its queue, job in service and anything arriving later. The
  source notices after ``base.dead_after_s`` and restarts the task from block 0 (up to
  ``max_retries``), otherwise the task fails with the reason. Tasks of a source whose own node is
  down fail ("source node down"). Nothing is dropped silently: every task ends with a record.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.simulator.failures import FailureModel
from orchestrator.simulator.handshake import HandshakeModel
from orchestrator.simulator.inputs import (
    _DELAY,
    _RATE,
    FailureConfig,
    LinkConfig,
    NodeConfig,
    SimOptions,
    SimResult,
    SimSource,
    SimulationError,
)
from orchestrator.simulator.links import LinkModel
from orchestrator.simulator.state import _Job, _live, _Node, _Task
from orchestrator.simulator.views import ViewModel
from pamdi_node.arrivals import arrival_offsets, beacon_phases
from pamdi_node.jitter import JitteredRelease, jitter_problem, link_seed
from pamdi_node.policies.partition import partition_end
from pamdi_node.policies.types import (
    LINK_GOODPUT_FACTOR,
    PeerView,
    Policy,
    SourceView,
    TaskView,
    WorldView,
    dead_after_s,
    weight_of,
)
from pamdi_node.records import COMPLETED, FAILED, TaskRecord
from pamdi_node.worker import (
    PlacementError,
    make_plan,
    next_step,
)


class Simulator(LinkModel, ViewModel, HandshakeModel, FailureModel):
    def __init__(
        self,
        nodes: list[NodeConfig],
        links: Mapping[tuple[str, str], LinkConfig],
        sources: list[SimSource],
        policy: Policy,
        *,
        options: SimOptions | None = None,
        failures: list[FailureConfig] | tuple[FailureConfig, ...] = (),
        seed: int = 0,
    ) -> None:
        self.opt = options or SimOptions()
        for opt_name in ("decision_cost_s", "message_cost_s"):
            if not getattr(self.opt, opt_name) >= 0:
                raise SimulationError(f"SimOptions.{opt_name} must be >= 0, got {getattr(self.opt, opt_name)}")
        self.policy = policy
        self.dead_after_s = (dead_after_s(self.opt.beacon_period_s) if self.opt.dead_after is None
                             else self.opt.dead_after * self.opt.beacon_period_s)
        # List each worker's own queue task by task in its self view only for policies that use it
        # (it costs O(queue) per decision, and unstable baselines grow long queues).
        self._list_waiting = bool(policy.uses_waiting)
        self.seed = seed
        self.nodes = {n.name: _Node(n.name, n.speed) for n in nodes}
        self.speeds = {n.name: n.speed for n in nodes}
        # directed links: (a, b) -> [goodput_bps, delay, free_at, success, schedule, est_free_at, last_arrival]
        # (the _RATE.. indices above; rate, delay and success are the configured values).
        self.links: dict[tuple[str, str], list[Any]] = {}
        # Jittered directions, each with its own seeded draws (as the agents' delay line seeds them),
        # so jitter-free links keep their fast path and the beacon phases stay as they were.
        self.jitter: dict[tuple[str, str], JitteredRelease] = {}
        adj: dict[str, list[str]] = {n: [] for n in self.nodes}
        for (a, b), lk in links.items():
            sched = lk.schedule
            if sched is not None and not sched.points:
                raise SimulationError(f"link {a}-{b}: scenario {sched.name!r} has no link profile (rate/delay/loss "
                                      "points) to simulate")
            problem = jitter_problem(lk.delay_s * 1000.0, lk.jitter_s * 1000.0, None if sched is None else sched.name)
            if problem:
                raise SimulationError(f"link {a}-{b}: {problem}")
            for u, v in ((a, b), (b, a)):
                if u not in self.nodes or v not in self.nodes:
                    raise SimulationError(f"link {a}-{b} names an unknown node")
                burst = lk.burst_bytes * 8.0 * LINK_GOODPUT_FACTOR
                self.links[(u, v)] = [lk.rate_bps * LINK_GOODPUT_FACTOR, lk.delay_s, 0.0, 1.0 - lk.loss, sched,
                                      0.0, 0.0, burst, burst, 0.0]
                if lk.jitter_s > 0:
                    self.jitter[(u, v)] = JitteredRelease(lk.delay_s, lk.jitter_s, link_seed(seed, u, v))
                if v not in adj[u]:
                    adj[u].append(v)
        self.neighbours = {n: tuple(sorted(v)) for n, v in adj.items()}
        # The graph's links as every worker knows them from the run configuration (for planners):
        # configured values, also on scenario links (the agents are never told of changes).
        self.link_table = {uv: (lk[_RATE], lk[_DELAY]) for uv, lk in self.links.items()}
        self.sources = {s.view.name: s.view for s in sources}
        self.source_cfg = sources
        self.failures = tuple(failures)
        self.now = 0.0
        self.seq = 0
        self.events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self.records: list[TaskRecord] = []
        self.outstanding = 0
        self.token = 0
        self.busy_s = dict.fromkeys(self.nodes, 0.0)
        self.compute: list[tuple[str, float, float]] = []
        self._peer_cache: dict[tuple[str, str], tuple[int, PeerView]] = {}
        self._routes: dict[tuple[str, int], dict[str, tuple[str, ...]]] = {}
        for node in self.nodes.values():
            node.snap_arrivals = {nb: [] for nb in self.neighbours[node.name]}
            node.mini_world = WorldView(here=node.name, now_s=0.0, peers={node.name: node.self_static},
                                        sources=self.sources, speeds=self.speeds, neighbours=self.neighbours,
                                        links=self.link_table)

    def seed_views(self) -> None:
        """Every worker's snapshot at the start: idle, known to every neighbour (the configuration)."""
        for node in self.nodes.values():
            node.snap_times.append(0.0)
            node.snaps.append((0.0, 0.0, ()))
            for arrivals in node.snap_arrivals.values():
                arrivals.append(0.0)

    # ------------------------------------------------------------------ event plumbing
    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, fn, args))

    def run(self) -> SimResult:
        wall0 = time.perf_counter()
        for cfg in self.source_cfg:
            self._schedule_arrivals(cfg)
        for f in self.failures:
            self.at(f.at_s, self._fail_node, f.node, f.recover_after_s)
        self.seed_views()
        # The agents' phases for this seed (the orchestrator hands them out); a replica draws others.
        phases = beacon_phases(self.seed, list(self.nodes), self.opt.beacon_period_s, self.opt.replica)
        for node in self.nodes.values():
            self.at(phases[node.name], self._beacon, node)
        n_events = 0
        events = self.events
        pop = heapq.heappop
        while events:
            t, _, fn, args = pop(events)
            if t > self.opt.max_sim_time_s:
                raise SimulationError(f"simulated time passed {self.opt.max_sim_time_s} s; runaway queue?")
            self.now = t
            fn(*args)
            n_events += 1
            if self.outstanding == 0 and self._arrivals_done():
                break
        self.records.sort(key=lambda r: (r.source, r.born_s, r.task_id))
        return SimResult(self.records, n_events, time.perf_counter() - wall0, self.now, self.busy_s, self.compute)

    # ------------------------------------------------------------------ physical links
    def _arrivals_done(self) -> bool:
        return self._pending_arrivals == 0

    # ------------------------------------------------------------------ arrivals
    _pending_arrivals = 0

    def _schedule_arrivals(self, cfg: SimSource) -> None:
        # The agents' own schedule for this seed (pamdi_node/arrivals.py): same times, same order.
        times = arrival_offsets(cfg.view.name, self.seed, cfg.samples, cfg.interval_s, cfg.arrival, cfg.start_s)
        for i, t in enumerate(times):
            self._pending_arrivals += 1
            self.at(t, self._arrive, cfg.view, i)

    def _arrive(self, source: SourceView, i: int) -> None:
        self._pending_arrivals -= 1
        task = _Task(f"{source.name}-{i}", source, self.now, source.node)
        self.outstanding += 1
        if not self.nodes[source.node].alive:
            self._finish(task, FAILED, "source node down")
            return
        self._decide(task, source.node)

    # ------------------------------------------------------------------ views
    def _decide(self, task: _Task, here: str) -> None:
        task.holder = here
        if task.block >= task.view.num_blocks:
            self._send_result(task, here)
            return
        world = self.world(here)
        tv = TaskView(task.id, task.source, task.block, task.born, here)
        try:
            task.plan = make_plan(self.policy, tv, world, task.view.num_blocks, partition_end(task.view, task.block),
                                  strict=True)
        except PlacementError as e:
            raise SimulationError(str(e)) from None
        self._try_next(task, here)

    def _try_next(self, task: _Task, here: str) -> None:
        assert task.plan is not None
        step = next_step(task.plan)
        if step.action == "run":
            self._enqueue(here, task, step.start, step.end)
        elif step.action == "offer":
            self._send_rtc(task, here, step)
        else:  # "send" (the simulator's workers may run every block: never "fail")
            self._transfer(task, here, step.node, step.start, step.end)

    # ------------------------------------------------------------------ RTC / CTC
    def _transfer(self, task: _Task, here: str, dest: str, start: int, end: int, grant: int = 0) -> None:
        task.hops += 1
        arrival = self._send_bytes(here, dest, task.view.bytes_into(start)) + self.opt.message_cost_s
        self.at(arrival, self._on_arrive, task, dest, start, end, task.attempt, grant, here)

    def _on_arrive(self, task: _Task, dest: str, start: int, end: int, attempt: int, grant: int = 0,
                   sender: str = "") -> None:
        if grant:
            self.nodes[dest].reserved.pop(grant, None)  # the granted work is here: queued, not reserved
        if task.attempt != attempt:
            return
        if not self.nodes[dest].alive:
            self._lost(task, f"worker {dest} failed")
            return
        self._acknowledge(dest, sender)
        if start == end:
            task.placements.append((dest, start, end))
            self._decide(task, dest)
        else:
            self._enqueue(dest, task, start, end)

    # ------------------------------------------------------------------ compute
    def _enqueue(self, name: str, task: _Task, start: int, end: int) -> None:
        node = self.nodes[name]
        task.holder = name
        est = task.view.range_time_s(start, end) / node.speed
        after = task.view.range_time_s(end, task.view.num_blocks) / node.speed
        job = _Job(task, start, end, est, after, weight_of(task.view))
        # Both queue disciplines go through queue_key: the FIFO baselines key on the task's birth
        # (oldest task first, so a task that keeps running here is not sent behind newer ones),
        # PA-MDI on its priority index.
        world = node.mini_world
        key = self.policy.queue_key(TaskView(task.id, task.source, start, task.born, name), world)  # type: ignore[arg-type]
        node.queue.push(job, tuple(key), task.source)
        if node.queue.running is None:
            self._start_next(node)

    def _start_next(self, node: _Node) -> None:
        job = node.queue.pop(_live)
        if job is None:
            return
        job.t0 = self.now
        node.queue.start(job, self.now + job.est_s)
        self.at(node.queue.running_until, self._done, node, job, node.epoch)

    def _done(self, node: _Node, job: _Job, epoch: int) -> None:
        if node.epoch != epoch:
            return  # the node failed meanwhile; the job was already accounted as lost
        self.busy_s[node.name] += job.est_s
        self.compute.append((node.name, job.t0, self.now))
        task = job.task
        task.block = job.end
        task.placements.append((node.name, job.start, job.end))
        cost = self.opt.decision_cost_s
        if cost > 0:
            # The worker stays occupied (the job stays ``running``: its residual is what is left of
            # the decision, its ``after_s`` the rest of the task) until the decision is taken and
            # the task (or its result) is on its way: the agent's executor waits that out too.
            node.queue.start(job, self.now + cost)
            self.at(node.queue.running_until, self._decided, node, job, epoch)
            return
        node.queue.finish()
        self._decide(task, node.name)
        if node.queue.running is None:
            self._start_next(node)

    def _decided(self, node: _Node, job: _Job, epoch: int) -> None:
        if node.epoch != epoch:
            return  # the node failed during the decision; the task was lost with it
        node.queue.finish()
        if _live(job):
            self._decide(job.task, node.name)
        if node.queue.running is None:
            self._start_next(node)

    # ------------------------------------------------------------------ results
    def _send_result(self, task: _Task, here: str) -> None:
        home = task.view.node
        if here == home:
            self._finish(task, COMPLETED, "")
            return
        path = self._route(here, home, task.view.result_bytes)
        if not path:
            self._finish(task, FAILED, f"no route from {here} back to {home}")
            return
        self._result_hop(task, path, 0, task.attempt)

    def _result_hop(self, task: _Task, path: tuple[str, ...], i: int, attempt: int) -> None:
        if task.attempt != attempt:
            return
        here = path[i]
        if not self.nodes[here].alive:
            self._lost(task, f"worker {here} failed (result lost)")
            return
        if i > 0:
            self._acknowledge(here, path[i - 1])
        if i == len(path) - 1:
            self._finish(task, COMPLETED, "")
            return
        task.hops += 1
        arrival = self._send_bytes(here, path[i + 1], task.view.result_bytes) + self.opt.message_cost_s
        self.at(arrival, self._result_hop, task, path, i + 1, attempt)

    # ------------------------------------------------------------------ failures
    def _finish(self, task: _Task, status: str, reason: str) -> None:
        task.attempt += 1  # invalidate any event still in flight
        self.outstanding -= 1
        self.records.append(TaskRecord(
            source=task.source, task_id=task.id, born_s=task.born, done_s=self.now if status == COMPLETED else None,
            status=status, reason=reason, placements=tuple(task.placements), hops=task.hops, retries=task.retries,
        ))
