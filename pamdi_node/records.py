"""What happened to tasks, as one set of types for the three places that handle it: the agents emit
``AgentRecord``s (one per task, at its source, on the source's clock) and ``Span``s (intervals of a
task's life on one node); the runner reads both back and turns the records into ``TaskRecord``s on
the orchestrator's clock; the simulator produces ``TaskRecord``s directly. ``metrics`` summarises
``TaskRecord``s alike from either side.

Records and spans travel as plain dicts (msgpack on the wire, JSON lines on disk); ``to_dict`` and
``from_dict`` are the only conversions, so a field added here reaches every reader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

COMPLETED = "completed"
FAILED = "failed"
STATUSES = (COMPLETED, FAILED)

# The kinds of span an agent writes (telemetry.py says what each one covers).
SPAN_KINDS = ("queue", "compute", "decide", "serialize", "transfer", "recv", "result", "retry", "lost")


class Span(TypedDict, total=False):
    """One interval of a task's life on one node (``telemetry.py``), on that node's clock until the
    runner shifts it onto the orchestrator's."""

    node: str
    kind: str  # one of SPAN_KINDS
    task: str
    source: str
    start: float
    end: float
    policy: str  # added by the runner
    to: str  # decide: where the next partition goes
    block: int  # decide: the boundary decided at
    blocks: list[int]  # queue, compute: [start, end)
    model_s: float  # compute: modelled time of the range (profile device time)
    host_s: float  # compute: real compute time on this host
    overrun_s: float  # compute: how far the range ran past its modelled time
    peer: str  # serialize, transfer, recv, result, retry: the other node
    bytes: int  # transfer, result: message size
    result: bool  # serialize: a result, not an activation
    reason: str  # retry, lost


class RecordError(ValueError):
    """A task record that is not one (names the field at fault)."""


def _num(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise RecordError(f"task record field {key!r}: {v!r} is not a finite number")
    return float(v)


def _str(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise RecordError(f"task record field {key!r}: {v!r} is not a string")
    return v


def _placements(v: Any) -> tuple[tuple[str, int, int], ...]:
    if not isinstance(v, list | tuple):
        raise RecordError(f"task record field 'placements': {v!r} is not a list")
    out = []
    for p in v:
        if (not isinstance(p, list | tuple) or len(p) != 3 or not isinstance(p[0], str)
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in p[1:])):
            raise RecordError(f"task record field 'placements': {p!r} is not [node, start, end]")
        out.append((p[0], int(p[1]), int(p[2])))
    return tuple(out)


@dataclass(frozen=True)
class AgentRecord:
    """One task's end as its source agent recorded it (``born``/``done`` on the source's clock)."""

    task: str
    source: str
    index: int
    model: str
    priority: float
    status: str  # COMPLETED or FAILED
    reason: str
    born: float
    done: float
    placements: tuple[tuple[str, int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "source": self.source, "index": self.index, "model": self.model,
                "priority": self.priority, "status": self.status, "reason": self.reason, "born": self.born,
                "done": self.done, "latency_s": self.done - self.born,
                "placements": [list(p) for p in self.placements], "nodes": len({p[0] for p in self.placements})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AgentRecord:
        """The record an agent's dict stands for; ``RecordError`` names the first field at fault
        (an agent is trusted with its own records, not with their shape)."""
        if not isinstance(d, Mapping):
            raise RecordError(f"task record {d!r} is not a mapping")
        status = _str(d, "status")
        if status not in STATUSES:
            raise RecordError(f"task record field 'status': {status!r} is not one of {', '.join(STATUSES)}")
        index = d.get("index", -1)
        if isinstance(index, bool) or not isinstance(index, int):
            raise RecordError(f"task record field 'index': {index!r} is not an integer")
        return cls(_str(d, "task"), _str(d, "source"), index, _str(d, "model", ""), _num(d, "priority"),
                   status, _str(d, "reason", "") or "", _num(d, "born"), _num(d, "done"),
                   _placements(d.get("placements", [])))


@dataclass(frozen=True)
class TaskRecord:
    """What happened to one task (data item or batch) of a source, on the orchestrator's clock
    (emulated: ``AgentRecord`` shifted by its node's clock offset; simulated: the virtual clock)."""

    source: str
    task_id: str
    born_s: float
    done_s: float | None
    status: str  # COMPLETED or FAILED
    reason: str = ""
    # Where its blocks ran, in order: (worker, first block, end block); relays have start == end.
    placements: tuple[tuple[str, int, int], ...] = ()
    hops: int = 0  # activation/result transfers between workers
    retries: int = 0  # restarts from the source after a failure
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def latency_s(self) -> float | None:
        return None if self.done_s is None else self.done_s - self.born_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "task_id": self.task_id, "born_s": self.born_s, "done_s": self.done_s,
            "status": self.status, "reason": self.reason, "placements": [list(p) for p in self.placements],
            "hops": self.hops, "retries": self.retries, **dict(self.extra),
        }
