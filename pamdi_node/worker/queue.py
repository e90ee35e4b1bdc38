"""A worker's queue ledger, the one description of "what is queued here" for the agent and the simulator.

Work is served by the policy's ``queue_key`` (computed by the driver at enqueue time), ties broken
by source name, then by arrival: ``(key, source, seq)``. Service is non-preemptive per partition. The
ledger keeps the committed seconds in total and by weight incrementally (the simulator asks for them
at every beacon), and describes itself as a ``QueueDetail``:

- the residual is only what is left of the partition in service (all that a waiting task of higher
  priority sits out);
- the rest of the model of the task in service (its ``after_s``) is committed work of its weight, so
  it counts in ``by_weight``; a task that landed here mostly stays, so queued items count their
  ``after_s`` too;
- ``waiting`` (only on request: it costs O(queue)) lists ``(born, weight, seconds)`` per queued item
  plus ``(born, weight, after_s)`` for the one in service.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

# Seconds below this are float dust from the incremental sums, not work.
DUST_S = 1e-12


class QueueDetail(NamedTuple):
    """A worker's queue as beacons and the self view carry it."""

    total_s: float  # everything committed here: residual + the rest of its model + every queued item
    by_weight: tuple[tuple[float, float], ...]  # (weight, seconds), the partition in service excluded
    residual_s: float  # what is left of the partition in service
    waiting: tuple[tuple[float, float, float], ...] = ()  # (born, weight, seconds) per task waiting here


class Reservation(NamedTuple):
    """Work a worker granted (CTC) that is still on its way: it counts as queued here from the grant
    on, so that the next requests (and the beacons) see it before it arrives."""

    est_s: float  # modelled time of the granted block range here
    weight: float
    born: float
    expires: float  # dropped then if it never came (driver's clock)


def reservation_expiry(now: float, rtc_timeout_s: float) -> float:
    """When a grant that never turned into a task stops counting (the sender gave up long before)."""
    return now + max(1.0, 4 * rtc_timeout_s)


def with_reservations(detail: QueueDetail, reserved: Iterable[Reservation], list_waiting: bool) -> QueueDetail:
    """``detail`` with granted work on its way counted in: total, by weight, and listed."""
    acc = dict(detail.by_weight)
    total = detail.total_s
    waiting = list(detail.waiting)
    n = 0
    for r in reserved:
        n += 1
        acc[r.weight] = acc.get(r.weight, 0.0) + r.est_s
        total += r.est_s
        if list_waiting:
            waiting.append((r.born, r.weight, r.est_s))
    if not n:
        return detail
    return QueueDetail(total, tuple(sorted(acc.items())), detail.residual_s, tuple(waiting))


class Work(Protocol):
    """What the ledger needs of a queued item (the agent's ``WorkItem``, the simulator's job)."""

    @property
    def est_s(self) -> float: ...  # modelled time of its block range at this worker

    @property
    def after_s(self) -> float: ...  # modelled time of the rest of its model after that range

    @property
    def weight(self) -> float: ...  # gamma * alpha of its source

    @property
    def born(self) -> float: ...  # its task's birth (orchestrator clock)


W = TypeVar("W", bound=Work)


class QueueLedger(Generic[W]):
    __slots__ = ("_by_weight", "_heap", "_seq", "queued_s", "running", "running_until")

    def __init__(self) -> None:
        self._heap: list[tuple[Any, str, int, W]] = []
        self._seq = 0
        self._by_weight: dict[float, float] = {}
        self.queued_s = 0.0  # est_s + after_s of everything queued (not the item in service)
        self.running: W | None = None
        self.running_until = 0.0  # when the item in service is modelled to end (driver's clock)

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, work: W, key: tuple[Any, ...], source: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (key, source, self._seq, work))
        s = work.est_s + work.after_s
        self.queued_s += s
        self._by_weight[work.weight] = self._by_weight.get(work.weight, 0.0) + s

    def pop(self, live: Callable[[W], bool] | None = None) -> W | None:
        """The next item to serve, or None; items ``live`` rejects (stale) are dropped on the way."""
        while self._heap:
            work = heapq.heappop(self._heap)[-1]
            s = work.est_s + work.after_s
            self.queued_s -= s
            self._by_weight[work.weight] -= s
            if not self._heap:
                # The running sums are exact again when nothing is queued: subtracting what was
                # added leaves float dust (-4e-17) that would read as work here, or as a negative
                # queue that a beacon may not carry (its encoder refuses it, the peers then count
                # this worker dead and it stays idle for the rest of the run).
                self.queued_s = 0.0
                self._by_weight.clear()
            if live is None or live(work):
                return work
        return None

    def start(self, work: W, until: float) -> None:
        self.running, self.running_until = work, until

    def finish(self) -> W | None:
        work, self.running = self.running, None
        return work

    def clear(self) -> list[W]:
        """Everything queued or in service, removed (a failed worker)."""
        lost = [e[-1] for e in self._heap]
        if self.running is not None:
            lost.append(self.running)
        self._heap.clear()
        self._by_weight.clear()
        self.queued_s = 0.0
        self.running = None
        return lost

    def load(self, now: float) -> tuple[float, float, tuple[tuple[float, float], ...]]:
        """(total seconds, residual of the partition in service, seconds by weight) at ``now``."""
        r = self.running
        residual = after = 0.0
        by_weight = self._by_weight
        if r is not None:
            residual = self.running_until - now if self.running_until > now else 0.0
            after = r.after_s
            if after > 0:
                by_weight = dict(by_weight)
                by_weight[r.weight] = by_weight.get(r.weight, 0.0) + after
        bw = tuple(sorted((w, s) for w, s in by_weight.items() if s > DUST_S))
        queued = self.queued_s if self.queued_s > DUST_S else 0.0
        return queued + residual + after, residual, bw

    def detail(self, now: float, list_waiting: bool = False,
               live: Callable[[W], bool] | None = None) -> QueueDetail:
        total, residual, bw = self.load(now)
        waiting: tuple[tuple[float, float, float], ...] = ()
        if list_waiting:
            listed = [(w.born, w.weight, w.est_s + w.after_s) for *_, w in self._heap if live is None or live(w)]
            r = self.running
            if r is not None and r.after_s > 0:
                listed.append((r.born, r.weight, r.after_s))
            waiting = tuple(listed)
        return QueueDetail(total, bw, residual, waiting)
