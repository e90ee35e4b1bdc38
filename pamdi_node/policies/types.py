"""The decision-policy interface shared by the simulator and the real agent: views and ``Policy``.

A policy is pure, deterministic code over frozen views of the world: it never touches sockets,
clocks or torch. The simulator and the agent both build the same views (from simulated state or
from received beacons) and ask the same policy the same questions, so they make the same choices.

Questions a policy answers:

1. ``queue_key``: the order in which a worker serves the tasks waiting in its queue
   (FIFO for the baselines, priority-index order for PA-MDI). Smaller keys are served first.
2. ``rank``: when a task sits at a partition boundary on worker ``here``, the ordered list of
   candidate placements for the next block range (self or a neighbour), best first.
3. ``grant``: a receiver that got several offload requests (RTC) in one window chooses which one
   to clear (CTC); the rest are denied and their senders try their next candidate.

Units: times in seconds, sizes in bytes, rates in bits per second. ``speed`` is relative to the
host the profiles were measured on (2.0 = twice as fast), so a block range costs
``profile.range_time_s(a, b) / speed`` seconds on a worker.

Beside this module: ``partition.py`` (cutting a model into partitions, views from profiles) and
``graph.py`` (transfer times, link estimates, chains and shortest paths over the views).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable


@dataclass(frozen=True)
class SourceView:
    """Static facts about one source, known to every worker from the run configuration."""

    name: str
    node: str
    model: str
    priority: float  # gamma_m
    accuracy: float  # alpha_m
    block_time_s: tuple[float, ...]  # profiled time per block on the reference host
    block_out_bytes: tuple[int, ...]  # activation bytes leaving each block
    input_bytes: int
    result_bytes: int
    # Partition boundaries: partition p runs blocks [bounds[p], bounds[p+1]).
    bounds: tuple[int, ...]

    @property
    def num_blocks(self) -> int:
        return len(self.block_time_s)

    def bytes_into(self, block: int) -> int:
        return self.input_bytes if block == 0 else self.block_out_bytes[block - 1]

    def range_time_s(self, start: int, end: int) -> float:
        return math.fsum(self.block_time_s[start:end])


@dataclass(frozen=True)
class TaskView:
    """One data item (or batch) of a source, at a partition boundary."""

    task_id: str
    source: str
    next_block: int  # first block not yet run
    born_s: float  # creation time at the source
    holder: str  # worker currently holding the activation


@dataclass(frozen=True)
class PeerView:
    """What worker ``here`` knows about a candidate worker (itself included).

    For a neighbour this comes from its last beacon; for ``here`` it is local state.
    """

    name: str
    speed: float  # relative to the profiled host
    # Seconds of work already committed there, at its own speed: what the tasks queued or in service
    # there still need to finish their models (a task that landed on a worker mostly stays).
    queue_s: float
    rate_bps: float  # link rate from here to it (math.inf for self)
    delay_s: float = 0.0  # one-way propagation delay from here (0 for self)
    alive: bool = True
    success: float = 1.0  # probability the hop and the worker succeed (1 - P_fail)
    # Queued seconds by task weight (gamma*alpha), excluding the job in service: lets a
    # priority-aware policy count only the work that would be served before its own task.
    # Empty = unknown: fall back to ``queue_s``.
    queue_by_weight: tuple[tuple[float, float], ...] = ()
    # Seconds left of the job in service (included in ``queue_s``; non-preemptive service).
    residual_s: float = 0.0
    # Seconds until the link from ``here`` to this peer has sent what ``here`` already queued on it
    # (sender-side knowledge, always fresh; 0 for self).
    link_backlog_s: float = 0.0
    # The worker's own queue task by task, ``(born_s, weight, seconds)`` for every task waiting
    # there (the task in service included, with what it needs after the current partition). Only
    # a worker's view of itself carries it (beacons do not): with it a policy can count exactly the
    # work its queue order serves before a given task. Empty = unknown.
    waiting: tuple[tuple[float, float, float], ...] = ()

    def queue_ahead_s(self, weight: float) -> float:
        """Seconds of queued work served before a task of ``weight`` under priority order.

        Work of equal or higher weight is ahead (equal weights are FIFO); the job in service is
        always ahead because service is not preempted. Computed as ``queue_s`` minus the queued
        work of lower weight, so that with a single weight class it is exactly ``queue_s`` (a
        priority-aware policy then sees the very numbers a priority-blind one sees).
        """
        if not self.queue_by_weight:
            return self.queue_s
        below = [s for w, s in self.queue_by_weight if w < weight]
        if not below:  # the common case for the top weight: nothing is served after it
            return self.queue_s
        lower = math.fsum(below)
        if lower <= 0.0:
            return self.queue_s
        return max(self.residual_s, self.queue_s - lower)


class Placement(NamedTuple):
    """Run blocks [start, end) of the task on ``node``; ``index`` is the policy's score (lower = better).

    Immutable like the other views; a named tuple because policies build one per candidate per
    decision (several per task: a frozen dataclass's construction was a tenth of a large
    simulation's time)."""

    node: str
    start: int
    end: int
    index: float


@dataclass(frozen=True)
class OffloadRequest:
    """An RTC: ``sender`` asks ``receiver`` to run [start, end) of ``task``."""

    task: TaskView
    sender: str
    receiver: str
    start: int
    end: int
    index: float
    priority: float
    # The sender's own best alternative (computing locally); a receiver that re-checks the
    # request with its fresh queue may deny when it would do worse than this.
    fallback_index: float = math.inf
    # When the sender scored it (orchestrator clock): the fallback's age is as of then.
    scored_s: float | None = None


@dataclass(frozen=True)
class WorldView:
    """Everything a worker may consult when deciding: itself, its live neighbours, the sources."""

    here: str
    now_s: float
    peers: Mapping[str, PeerView]  # includes ``here``
    sources: Mapping[str, SourceView]
    # Every node's relative speed as last known (for chain planners such as AR-MDI).
    speeds: Mapping[str, float] = field(default_factory=dict)
    # Adjacency of the whole graph, for policies that plan paths (AR-MDI chain, routing results back).
    neighbours: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Directed links of the whole graph as last known: (a, b) -> (goodput bps, one-way delay s), for
    # planners that cost moves between other workers (PA-MDI look-ahead, AR-MDI chain). Empty =
    # unknown: see ``link_estimate`` for the fallback.
    links: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    name: str
    priority_queue: bool  # serve queues by queue_key (True) or FIFO (False)
    handshake: bool  # use the RTC/CTC request/clear exchange before offloading
    uses_waiting: bool  # the holder's own queue listed task by task in its peer view (``PeerView.waiting``)

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]: ...

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]: ...

    def grant(self, requests: Sequence[OffloadRequest], world: WorldView) -> OffloadRequest | None: ...

    def needs_handshake(self, task: TaskView, world: WorldView) -> bool:
        """Whether offloading ``task`` now goes through RTC/CTC."""
        ...


class PolicyDefaults:
    """The members of ``Policy`` that most policies leave as they are, with their defaults: every
    policy subclasses this (or ``FifoBaseline``), so the simulator and the agent read them directly."""

    handshake: bool = False
    uses_waiting: bool = False

    def needs_handshake(self, task: TaskView, world: WorldView) -> bool:
        return bool(self.handshake)


class FifoBaseline(PolicyDefaults):
    """What the baselines share: FIFO queues by birth time, no handshake, and (if a receiver ever
    has several requests) the lowest (partition index, sender, task id) granted first."""

    priority_queue: bool = False

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]:
        return (task.born_s,)

    def grant(self, requests: Sequence[OffloadRequest], world: WorldView) -> OffloadRequest | None:
        return min(requests, key=lambda r: (r.index, r.sender, r.task.task_id), default=None)


# ----------------------------------------------------------------------------------------------
# Shared constants and rules (used by the policies, the simulator, the allocator and the agent).

# Shaped TCP goodput is this fraction of the configured link-layer rate (measured here with
# htb/tbf; header overhead). Views carry goodput, so policies never apply it themselves.
LINK_GOODPUT_FACTOR = 0.956


# Liveness, the one rule for the simulator and the agent: a worker is dead (no longer a candidate;
# work handed to it is taken back) once nothing was heard from it for ``dead_after_s(period)``. The
# slack is for real networks: beacons leave from an I/O loop that shares the CPU with compute, and
# on a shaped link a beacon waits behind the activations queued before it.
DEAD_AFTER_PERIODS = 4.0
DEAD_AFTER_SLACK_S = 0.2


def dead_after_s(beacon_period_s: float) -> float:
    """Seconds without a beacon (or any message) after which a worker counts as dead."""
    return DEAD_AFTER_PERIODS * beacon_period_s + DEAD_AFTER_SLACK_S


def weight_of(source: SourceView) -> float:
    """The priority weight gamma*alpha of a source's tasks."""
    return source.priority * source.accuracy
