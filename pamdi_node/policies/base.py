"""The decision-policy interface shared by the simulator and the real agent.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


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
    queue_s: float  # seconds of work already queued there, at its own speed
    rate_bps: float  # link rate from here to it (math.inf for self)
    delay_s: float = 0.0  # one-way propagation delay from here (0 for self)
    alive: bool = True
    success: float = 1.0  # probability the hop and the worker succeed (1 - P_fail)


@dataclass(frozen=True)
class Placement:
    """Run blocks [start, end) of the task on ``node``; ``index`` is the policy's score (lower = better)."""

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


@runtime_checkable
class Policy(Protocol):
    name: str
    priority_queue: bool  # serve queues by queue_key (True) or FIFO (False)
    handshake: bool  # use the RTC/CTC request/clear exchange before offloading

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]: ...

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]: ...

    def grant(self, requests: Sequence[OffloadRequest], world: WorldView) -> OffloadRequest | None: ...
