"""The simulator's mutable state: tasks, jobs (a task's block range queued or running on a node) and nodes."""

from __future__ import annotations

import math

from pamdi_node.policies.types import (
    OffloadRequest,
    PeerView,
    SourceView,
    WorldView,
)
from pamdi_node.worker import (
    GrantWindow,
    Plan,
    QueueLedger,
    Reservation,
    Step,
)


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
