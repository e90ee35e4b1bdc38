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
- Beacons: every worker snapshots (queue seconds, residual, per-weight queue) every period, with a
  seeded random phase. Queue seconds count what the tasks present still need to finish their
  models there (queued job + the rest of the model, at the worker's speed): with per-partition
  jobs a task that has landed on a worker mostly stays, so counting only the queued partition
  would hide most of the committed work. The residual is only what is left of the partition in
  service (all a waiting task of higher priority sits out); the rest of that task's model counts
  in its weight's queue. Every worker also knows the graph's link rates and delays
  (``WorldView.links``, from the run configuration) for planners. Rates, delays and success
  probabilities in the policies' view (``WorldView.links``, ``PeerView.rate_bps/delay_s/success``)
  are the configured ones even on scenario links, because that is all the agents get: the
  orchestrator sends them the spec link's ``rate_mbit/delay_ms/loss`` once in the run config
  (``runner.build_configs``) and the netns backend changes tc in place without telling them. The
  sender's link backlog estimate likewise counts what it queued at the configured rate (the
  agent's ``PeerTable.on_sent``). A neighbour sees the latest snapshot older than the
  link delay (stale views); no snapshot for ``base.dead_after_s`` = dead (not a candidate).
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

import bisect
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.metrics import COMPLETED, FAILED, TaskRecord
from pamdi_node.arrivals import arrival_offsets
from pamdi_node.policies.graph import shortest_paths
from pamdi_node.policies.partition import partition_end
from pamdi_node.policies.types import (
    LINK_GOODPUT_FACTOR,
    OffloadRequest,
    PeerView,
    Policy,
    SourceView,
    TaskView,
    WorldView,
    dead_after_s,
    weight_of,
)
from pamdi_node.worker import (
    GrantWindow,
    PlacementError,
    Plan,
    QueueDetail,
    QueueLedger,
    Reservation,
    Step,
    choose_grant,
    make_plan,
    next_step,
    reservation_expiry,
    with_reservations,
)

CTRL_BYTES = 64
BEACON_BYTES = 160  # a beacon on the wire: msgpack header with the per-weight queue, ZMTP and TCP/IP

# Directed link state (a list per direction, both sharing one LinkSchedule): configured goodput,
# configured delay, when the physical link has sent everything queued (free_at), configured
# success probability, the schedule (None = constant link), the sender's estimate of free_at at
# the configured rate, and the last arrival on that direction (FIFO delivery).
_RATE, _DELAY, _FREE, _SUCCESS, _SCHED, _EST_FREE, _LAST_ARRIVAL, _BURST, _TOKENS, _TOK_T = range(10)


class SimulationError(RuntimeError):
    """The simulation cannot go on (a policy returned an impossible placement, runaway time)."""


@dataclass(frozen=True)
class SimOptions:
    beacon_period_s: float = 0.1
    # Beacon periods without news before a neighbour counts as dead; None = the rule the agent uses
    # too (``base.dead_after_s``: periods plus a slack).
    dead_after: float | None = None
    rtc_window_s: float = 0.001  # receiver collects RTCs this long before granting one
    rtc_timeout_s: float = 0.5  # sender gives up waiting for CTC/DENY
    max_retries: int = 2
    max_sim_time_s: float = 1e7
    # Seconds a worker stays occupied after a partition before its boundary decision (module doc).
    decision_cost_s: float = 0.0
    # Seconds added once to every data/result transfer hop, on top of serialization + delay.
    message_cost_s: float = 0.0
    # Model the tbf token bucket the netns/docker backends shape links with, as in a run stretched
    # this many times (``orchestrator/timescale.py``); None = pure serialisation (real links).
    shaper_stretch: float | None = None
    # Scenario time at simulated time 0 (a scenario link's phase; see the module doc).
    scenario_offset_s: float = 0.0


@dataclass(frozen=True)
class NodeConfig:
    name: str
    speed: float


@dataclass(frozen=True)
class LinkSchedule:
    """A link's parameters over time (a radio scenario's points): from ``t_s`` on, until the next
    point, the link runs at ``rate_bps`` (link-layer) with ``delay_s`` one-way and ``loss``; with
    ``period_s > 0`` the points repeat every period (``Scenario.at``: t mod period), else the last
    point stays. Times are scenario seconds."""

    name: str
    points: tuple[tuple[float, float, float, float], ...]  # (t_s, rate_bps, delay_s, loss)
    period_s: float = 0.0
    goodput_factor: float = LINK_GOODPUT_FACTOR
    _times: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _goodput: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times = tuple(float(p[0]) for p in self.points)
        if times:
            if times[0] != 0.0:
                raise SimulationError(f"scenario {self.name!r}: the first point must be at t_s = 0")
            if any(b <= a for a, b in itertools.pairwise(times)):
                raise SimulationError(f"scenario {self.name!r}: point times must increase strictly")
            if any(p[1] <= 0 for p in self.points):
                raise SimulationError(f"scenario {self.name!r}: rates must be positive")
            if self.period_s > 0 and self.period_s <= times[-1]:
                raise SimulationError(f"scenario {self.name!r}: the period must be longer than the last point's t_s")
        object.__setattr__(self, "_times", times)
        object.__setattr__(self, "_goodput", tuple(p[1] * self.goodput_factor for p in self.points))

    def index(self, t: float) -> int:
        """The point in force at scenario time ``t`` (the last one with ``t_s <= t``)."""
        if self.period_s > 0:
            t = t % self.period_s
        i = bisect.bisect_right(self._times, t) - 1
        return i if i > 0 else 0

    def state(self, t: float) -> tuple[float, float, float]:
        """(goodput bps, one-way delay s, loss) at scenario time ``t``."""
        i = self.index(t)
        return self._goodput[i], self.points[i][2], self.points[i][3]

    def transmit(self, start: float, bits: float) -> tuple[float, float]:
        """Serialize ``bits`` from scenario time ``start`` on, at the goodput in force at every
        instant; return (when the last bit has left, when the whole message has arrived): the
        latest of ``t + delay(t)`` at the last bit and just before every change it straddled."""
        times, goodput, points, period = self._times, self._goodput, self.points, self.period_s
        n = len(times)
        if period > 0:
            local = start % period
            k = math.floor((start - local) / period + 0.5)
        else:
            local, k = start, 0
        i = bisect.bisect_right(times, local) - 1
        if i < 0:
            i = 0
        s = start
        release = -math.inf
        while True:
            r = goodput[i]
            if i + 1 < n:
                seg_end = k * period + times[i + 1]
            elif period > 0:
                seg_end = (k + 1) * period
            else:
                seg_end = math.inf
            done = s + bits / r
            if done <= seg_end:
                arrival = done + points[i][2]
                return done, arrival if arrival > release else release
            if seg_end > s:
                bits -= (seg_end - s) * r
                edge = seg_end + points[i][2]  # the bits that left just before the change
                if edge > release:
                    release = edge
                s = seg_end
            i += 1
            if i == n:
                i, k = 0, k + 1


@dataclass(frozen=True)
class LinkConfig:
    rate_bps: float  # configured link-layer rate (what the agents are told)
    delay_s: float = 0.0
    loss: float = 0.0
    # Time-varying physical link (a radio scenario); None = the configured values throughout.
    schedule: LinkSchedule | None = None
    # Token bucket of the shaper that emulates the link (tbf's burst, ``netem/tc.burst_bytes``): an
    # idle link sends up to this many bytes at once. 0 = a pure serialisation queue (real links).
    burst_bytes: float = 0.0


@dataclass(frozen=True)
class SourceConfig:
    view: SourceView
    samples: int
    interval_s: float
    arrival: str = "periodic"  # or "poisson"
    start_s: float = 0.0


@dataclass(frozen=True)
class FailureConfig:
    node: str
    at_s: float
    recover_after_s: float | None = None


class _Task:
    __slots__ = ("attempt", "block", "born", "holder", "hops", "id", "offered", "placements", "plan", "retries",
                 "source", "view", "waiting")

    def __init__(self, tid: str, source: SourceView, born: float, holder: str) -> None:
        self.id = tid
        self.source = source.name
        self.view = source
        self.born = born
        self.block = 0
        self.holder = holder
        self.attempt = 0
        self.retries = 0
        self.hops = 0
        self.placements: list[tuple[str, int, int]] = []
        self.plan: Plan | None = None  # the decision under way at ``holder`` (pamdi_node.worker)
        self.offered: Step | None = None  # the offer (RTC) awaiting an answer
        self.waiting = 0  # token of the RTC the task waits on (0 = none)


class _Job:
    """A block range queued at a worker (the ``Work`` of its ``QueueLedger``)."""

    __slots__ = ("after_s", "attempt", "end", "est_s", "start", "t0", "task", "weight")

    def __init__(self, task: _Task, start: int, end: int, est_s: float, after_s: float, weight: float) -> None:
        self.task, self.start, self.end, self.est_s, self.weight = task, start, end, est_s, weight
        self.after_s = after_s  # seconds the task still needs after this job (rest of its model, here)
        self.attempt = task.attempt
        self.t0 = 0.0  # when it started

    @property
    def born(self) -> float:
        return self.task.born


def _live(job: _Job) -> bool:
    return job.attempt == job.task.attempt


class _Node:
    __slots__ = ("alive", "epoch", "grants", "mini_world", "name", "queue", "reserved", "self_static",
                 "snap_arrivals", "snap_times", "snaps", "speed")

    def __init__(self, name: str, speed: float) -> None:
        self.name = name
        self.speed = speed
        self.alive = True
        self.epoch = 0
        self.queue: QueueLedger[_Job] = QueueLedger()  # running = the job in service (or being decided)
        self.grants: GrantWindow[tuple[OffloadRequest, _Task, int]] = GrantWindow()
        self.reserved: dict[int, Reservation] = {}  # granted work on its way here, by RTC token
        self.snap_times: list[float] = []
        self.snap_arrivals: dict[str, list[float]] = {}  # neighbour -> when each snapshot's beacon reached it
        self.snaps: list[tuple[float, float, tuple[tuple[float, float], ...]]] = []
        self.self_static = PeerView(name=name, speed=speed, queue_s=0.0, rate_bps=math.inf)
        self.mini_world: WorldView | None = None


@dataclass
class SimResult:
    records: list[TaskRecord]
    events: int
    wall_s: float
    end_s: float
    busy_s: dict[str, float] = field(default_factory=dict)
    # (node, start, end) of every job that ran to completion, in simulated seconds (no relays).
    compute: list[tuple[str, float, float]] = field(default_factory=list)


class Simulator:
    def __init__(
        self,
        nodes: list[NodeConfig],
        links: Mapping[tuple[str, str], LinkConfig],
        sources: list[SourceConfig],
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
        self.rng = random.Random(seed)
        self.seed = seed
        self.nodes = {n.name: _Node(n.name, n.speed) for n in nodes}
        self.speeds = {n.name: n.speed for n in nodes}
        # directed links: (a, b) -> [goodput_bps, delay, free_at, success, schedule, est_free_at, last_arrival]
        # (the _RATE.. indices above; rate, delay and success are the configured values).
        self.links: dict[tuple[str, str], list[Any]] = {}
        adj: dict[str, list[str]] = {n: [] for n in self.nodes}
        for (a, b), lk in links.items():
            sched = lk.schedule
            if sched is not None and not sched.points:
                raise SimulationError(f"link {a}-{b}: scenario {sched.name!r} has no link profile (rate/delay/loss "
                                      "points) to simulate")
            for u, v in ((a, b), (b, a)):
                if u not in self.nodes or v not in self.nodes:
                    raise SimulationError(f"link {a}-{b} names an unknown node")
                burst = lk.burst_bytes * 8.0 * LINK_GOODPUT_FACTOR
                self.links[(u, v)] = [lk.rate_bps * LINK_GOODPUT_FACTOR, lk.delay_s, 0.0, 1.0 - lk.loss, sched,
                                      0.0, 0.0, burst, burst, 0.0]
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
        for node in self.nodes.values():
            self.at(self.rng.uniform(0.0, self.opt.beacon_period_s), self._beacon, node)
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
    def link_state(self, a: str, b: str, t: float | None = None) -> tuple[float, float, float]:
        """(goodput bps, one-way delay s, loss) of the physical link a->b at simulated time ``t``
        (default: now). On a scenario link this is the scenario's point then, not the view's."""
        link = self.links[(a, b)]
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            return link[_RATE], link[_DELAY], 1.0 - link[_SUCCESS]
        return sched.state((self.now if t is None else t) + self.opt.scenario_offset_s)

    def _phys(self, link: list[Any]) -> tuple[float, float]:
        """(goodput, delay) of a directed link right now."""
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            return link[_RATE], link[_DELAY]
        g, d, _ = sched.state(self.now + self.opt.scenario_offset_s)
        return g, d

    def _arrivals_done(self) -> bool:
        return self._pending_arrivals == 0

    # ------------------------------------------------------------------ arrivals
    _pending_arrivals = 0

    def _schedule_arrivals(self, cfg: SourceConfig) -> None:
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
    def _detail(self, node: _Node, list_waiting: bool = False) -> QueueDetail:
        d = node.queue.detail(self.now, list_waiting, _live)
        return with_reservations(d, node.reserved.values(), list_waiting) if node.reserved else d

    def _self_view(self, node: _Node) -> PeerView:
        d = self._detail(node, self._list_waiting)
        return PeerView(name=node.name, speed=node.speed, queue_s=d.total_s, rate_bps=math.inf,
                        delay_s=0.0, alive=node.alive, success=1.0, queue_by_weight=d.by_weight,
                        residual_s=d.residual_s, waiting=d.waiting)

    def _peer_view(self, here: str, other: str) -> PeerView:
        link = self.links[(here, other)]
        node = self.nodes[other]
        # Beacons travel the physical link, behind the data queued on it; the view carries the
        # configured link (module doc).
        arrivals = node.snap_arrivals[here]
        idx = bisect.bisect_right(arrivals, self.now) - 1
        if idx < 0:
            idx = 0
        alive = (self.now - arrivals[idx]) <= self.dead_after_s
        key = (here, other)
        cached = self._peer_cache.get(key)
        # What the holder believes is still queued on the link: the agents' estimate (bytes sent at
        # the configured goodput; ``PeerTable.on_sent``), blind to the shaper's bucket and to scenarios.
        free_at = link[_EST_FREE]
        backlog = free_at - self.now if free_at > self.now else 0.0
        if cached is not None and cached[0] == idx and cached[1].alive == alive and cached[1].link_backlog_s == backlog:
            return cached[1]
        q, residual, bw = node.snaps[idx]
        view = PeerView(name=other, speed=node.speed, queue_s=q, rate_bps=link[_RATE], delay_s=link[_DELAY],
                        alive=alive, success=link[_SUCCESS], queue_by_weight=bw, residual_s=residual,
                        link_backlog_s=backlog)
        self._peer_cache[key] = (idx, view)
        return view

    def world(self, here: str) -> WorldView:
        node = self.nodes[here]
        peers = {here: self._self_view(node)}
        for nb in self.neighbours[here]:
            peers[nb] = self._peer_view(here, nb)
        return WorldView(here=here, now_s=self.now, peers=peers, sources=self.sources, speeds=self.speeds,
                         neighbours=self.neighbours, links=self.link_table)

    def _beacon(self, node: _Node) -> None:
        if not node.alive:
            return
        node.snap_times.append(self.now)
        d = self._detail(node)
        node.snaps.append((d.total_s, d.residual_s, d.by_weight))
        # In band: a beacon waits on each link behind the activations and results queued there (the
        # agents send it on their one connection per peer), so a busy link makes views stale.
        for nb, arrivals in node.snap_arrivals.items():
            arrivals.append(self._small_arrival(node.name, nb, BEACON_BYTES))
        if self.outstanding > 0 or self._pending_arrivals > 0:
            self.at(self.now + self.opt.beacon_period_s, self._beacon, node)

    # ------------------------------------------------------------------ decisions
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
    def _ctrl_delay(self, a: str, b: str) -> float:
        """Seconds until a control message (RTC, CTC, DENY) sent now from a reaches b."""
        return self._small_arrival(a, b, CTRL_BYTES) - self.now

    def _small_arrival(self, a: str, b: str, nbytes: int) -> float:
        """When a small message (control, beacon) sent now from a reaches b. It shares the link with
        the activations and results a sends b (one connection, one shaper queue), so it waits behind
        whatever is queued there, as the agents' messages do; its own bytes are left out of the
        link's occupancy and of the sender's backlog estimate (the agents' estimate counts data
        only, and a few hundred bytes do not move the data behind them noticeably)."""
        link = self.links[(a, b)]
        start = self.now if self.now > link[_FREE] else link[_FREE]
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            return start + nbytes * 8.0 / link[_RATE] + link[_DELAY]
        off = self.opt.scenario_offset_s
        _, arrival = sched.transmit(start + off, nbytes * 8.0)
        arrival -= off
        return arrival if arrival > link[_LAST_ARRIVAL] else link[_LAST_ARRIVAL]

    def _send_rtc(self, task: _Task, here: str, step: Step) -> None:
        assert task.plan is not None
        self.token += 1
        task.waiting = self.token
        task.offered = step
        req = OffloadRequest(task=TaskView(task.id, task.source, task.block, task.born, here), sender=here,
                             receiver=step.node, start=step.start, end=step.end, index=step.index,
                             priority=weight_of(task.view), fallback_index=task.plan.fallback_index)
        self.at(self.now + self._ctrl_delay(here, step.node), self._on_rtc, req, task, self.token)
        self.at(self.now + self.opt.rtc_timeout_s, self._on_reply, task, here, self.token, False, task.attempt)

    def _on_rtc(self, req: OffloadRequest, task: _Task, token: int) -> None:
        node = self.nodes[req.receiver]
        if not node.alive:
            return  # the sender will time out
        if node.grants.add((req, task, token), self.now, self.opt.rtc_window_s):
            self.at(self.now + self.opt.rtc_window_s, self._close_window, node)

    def _close_window(self, node: _Node) -> None:
        pending = node.grants.close()
        if not node.alive or not pending:
            return
        granted = choose_grant(self.policy, [r for r, _, _ in pending], self.world(node.name), strict=True)
        for req, task, token in pending:
            ok = granted is req
            if ok:  # counts as queued here until it arrives (or the grant expires), as in the agent
                est = task.view.range_time_s(req.start, req.end) / node.speed
                node.reserved[token] = Reservation(est, weight_of(task.view), task.born,
                                                   reservation_expiry(self.now, self.opt.rtc_timeout_s))
                self.at(node.reserved[token].expires, self._expire_reservation, node, token)
            self.at(self.now + self._ctrl_delay(node.name, req.sender), self._on_reply, task, req.sender, token, ok,
                    task.attempt)

    def _expire_reservation(self, node: _Node, token: int) -> None:
        node.reserved.pop(token, None)

    def _on_reply(self, task: _Task, here: str, token: int, granted: bool, attempt: int) -> None:
        if task.waiting != token or task.attempt != attempt:
            return  # already answered (or timed out), or the task was restarted
        task.waiting = 0
        if not self.nodes[here].alive:
            self._lost(task, f"worker {here} failed")
            return
        step, task.offered = task.offered, None
        assert step is not None
        if granted:
            self._transfer(task, here, step.node, step.start, step.end, token)
        else:
            self._try_next(task, here)

    # ------------------------------------------------------------------ transfers
    def _send_bytes(self, a: str, b: str, nbytes: int) -> float:
        """Queue ``nbytes`` on link a->b; return the arrival time at b."""
        link = self.links[(a, b)]
        start = self.now if self.now > link[2] else link[2]
        bits = nbytes * 8.0
        est = link[_EST_FREE]  # the sender's estimate, as the agents keep it: configured goodput, no bucket
        link[_EST_FREE] = (self.now if self.now > est else est) + bits / link[_RATE]
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            burst = link[_BURST]
            if burst > 0:  # the shaper's bucket refills while the link idles; what it holds goes at once
                avail = min(burst, link[_TOKENS] + (start - link[_TOK_T]) * link[_RATE])
                if bits <= avail:
                    link[_TOKENS], bits = avail - bits, 0.0
                else:
                    link[_TOKENS], bits = 0.0, bits - avail
            link[2] = start + bits / link[0]
            link[_TOK_T] = link[2]
            return link[2] + link[1]
        off = self.opt.scenario_offset_s
        done, arrival = sched.transmit(start + off, bits)
        link[_FREE] = done - off
        arrival -= off
        if arrival < link[_LAST_ARRIVAL]:
            arrival = link[_LAST_ARRIVAL]
        link[_LAST_ARRIVAL] = arrival
        return arrival

    def _transfer(self, task: _Task, here: str, dest: str, start: int, end: int, grant: int = 0) -> None:
        task.hops += 1
        arrival = self._send_bytes(here, dest, task.view.bytes_into(start)) + self.opt.message_cost_s
        self.at(arrival, self._on_arrive, task, dest, start, end, task.attempt, grant)

    def _on_arrive(self, task: _Task, dest: str, start: int, end: int, attempt: int, grant: int = 0) -> None:
        if grant:
            self.nodes[dest].reserved.pop(grant, None)  # the granted work is here: queued, not reserved
        if task.attempt != attempt:
            return
        if not self.nodes[dest].alive:
            self._lost(task, f"worker {dest} failed")
            return
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
    def _route(self, src: str, dst: str, nbytes: int) -> tuple[str, ...]:
        key = (dst, nbytes)
        table = self._routes.get(key)
        if table is None:
            def cost(u: str, v: str) -> float:
                # Paths are computed from the destination backwards, on the configured links
                # (what the workers know; routes do not follow a scenario's changes).
                link = self.links[(v, u)]
                return nbytes * 8.0 / link[0] + link[1]
            table = shortest_paths(dst, self.neighbours, cost)
            self._routes[key] = table
        path = table.get(src)
        if path is None:
            return ()
        return tuple(reversed(path))

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
        if i == len(path) - 1:
            self._finish(task, COMPLETED, "")
            return
        task.hops += 1
        arrival = self._send_bytes(here, path[i + 1], task.view.result_bytes) + self.opt.message_cost_s
        self.at(arrival, self._result_hop, task, path, i + 1, attempt)

    # ------------------------------------------------------------------ failures
    def _fail_node(self, name: str, recover_after: float | None) -> None:
        node = self.nodes[name]
        if not node.alive:
            return
        node.alive = False
        node.epoch += 1
        lost = node.queue.clear()
        node.grants.close()
        node.reserved.clear()
        for job in lost:
            if _live(job):
                self._lost(job.task, f"worker {name} failed")
        if recover_after is not None:
            self.at(self.now + recover_after, self._recover_node, name)

    def _recover_node(self, name: str) -> None:
        node = self.nodes[name]
        node.alive = True
        node.epoch += 1
        self.at(self.now, self._beacon, node)

    def _lost(self, task: _Task, reason: str) -> None:
        """The task's state died with a worker: the source restarts it after noticing, or gives up."""
        task.attempt += 1
        task.waiting = 0
        home = task.view.node
        if task.retries >= self.opt.max_retries:
            self._finish(task, FAILED, f"{reason}; gave up after {task.retries} retries")
            return
        task.retries += 1
        detect = self.dead_after_s
        self.at(self.now + detect, self._restart, task, home, reason, task.attempt)

    def _restart(self, task: _Task, home: str, reason: str, attempt: int) -> None:
        if task.attempt != attempt:
            return
        if not self.nodes[home].alive:
            self._finish(task, FAILED, f"{reason}; source node down")
            return
        task.block = 0
        task.placements.append((home, 0, 0))  # restart marker
        self._decide(task, home)

    def _finish(self, task: _Task, status: str, reason: str) -> None:
        task.attempt += 1  # invalidate any event still in flight
        self.outstanding -= 1
        self.records.append(TaskRecord(
            source=task.source, task_id=task.id, born_s=task.born, done_s=self.now if status == COMPLETED else None,
            status=status, reason=reason, placements=tuple(task.placements), hops=task.hops, retries=task.retries,
        ))
