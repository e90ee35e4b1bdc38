"""Task state inside one agent: the task itself, a queued block range, and the custody of a hand-off."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pamdi_node.worker.decide import Plan


@dataclass
class Task:
    """A data item of a source, as held by this node: the activation entering ``next_block``."""

    id: str
    source: str
    origin: str  # node of the source: where the result goes
    model: str
    priority: float
    born: float  # origin clock
    next_block: int
    tensor: Any  # CPU torch.Tensor, or a tuple of them (GPT-2's top-k head): the wire format
    path: list[str] = field(default_factory=list)  # nodes that held the task, in order
    placements: list[list[Any]] = field(default_factory=list)  # [[node, start, end], ...]
    upstream: tuple[str, str] | None = None  # (peer, hop) to RELEASE once a downstream node has it
    excluded: set[str] = field(default_factory=set)  # peers that failed this task: never retried for it
    sent_away: bool = False  # handed to a peer at least once: only then may a peer send its result
    arrived: float = 0.0  # local clock


@dataclass
class WorkItem:
    task: Task
    start: int
    end: int
    enqueued: float
    seq: int
    est_s: float  # estimated run time of [start, end) at this node's speed
    weight: float = 1.0  # gamma*alpha of the task's source (for the per-weight queue in beacons)
    # Estimated time of the rest of the model after ``end`` at this node's speed: a task that landed
    # here mostly stays, so the advertised queue counts it too (as the simulator does).
    after_s: float = 0.0
    key: tuple = ()  # the policy's queue_key, computed at enqueue (smaller = served first)

    @property
    def born(self) -> float:
        return self.task.born


@dataclass
class Custody:
    """An activation (or result) handed to ``peer`` that this node keeps until released."""

    hop: str
    peer: str
    task: Task
    kind: str  # "task" or "result"
    start: int
    end: int
    sent: float
    acked: bool = False
    ack_by: float = math.inf  # no ack by then: the hand-off failed
    ok: bool = True  # for results: success or failure report
    reason: str | None = None


@dataclass
class PendingOffer:
    """An RTC sent to ``node``, waiting for CTC/DENY; ``plan`` holds the candidates after it."""

    hop: str
    task: Task
    node: str
    start: int
    end: int
    plan: Plan
    deadline: float
    decide_start: float


def finite(x: float) -> float:
    """``x`` for the wire (msgpack carries inf, but peers compare; the largest float stands in)."""
    return float(x) if math.isfinite(x) else 1e300


def tensors_of(x: Any) -> tuple[list[Any], bool]:
    """Frames of an activation: a tensor, or a tuple of tensors (flagged so it is rebuilt as one)."""
    if isinstance(x, tuple | list):
        return list(x), True
    return [x], False


def activation(arrays: list[Any], is_tuple: bool) -> Any:
    """An activation from its frames' arrays (the inverse of ``tensors_of``)."""
    import torch

    ts = [torch.from_numpy(a) for a in arrays]
    return tuple(ts) if is_tuple else ts[0]
