"""The executor: one thread that runs torch, so that the network loop never waits on compute.

Work items (a task and a block range) wait in a queue served by the policy's ``queue_key``, which
the I/O loop computes at enqueue time (as the simulator does). Blocks are built once per node from
the model zoo (only the blocks this node may run) and kept on the chosen device; activations come
in and go out as CPU tensors (the wire format), moved to the device only around the compute.

Under the ``profile`` device-time model (``pamdi_node/devicetime.py``) the executor holds each
result until the range's modelled time (profiled time / node speed, ``WorkItem.est_s``) has passed
since its compute started, and records by how much the real compute overran it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from pamdi_node import devicetime
from pamdi_node.agent.tasks import WorkItem
from pamdi_node.devicetime import Timing

log = logging.getLogger(__name__)

# Longest the executor waits for the I/O loop's decision on a task that finished a partition here
# (a safety net: the loop answers in well under a millisecond unless its CPU quota is exhausted).
DECISION_HOLD_S = 0.5


class QueueDetail(NamedTuple):
    """A worker's queue as beacons and the self view carry it (see ``Executor.queue_detail``)."""

    total_s: float  # everything committed here: residual + the rest of its model + every queued item
    by_weight: tuple[tuple[float, float], ...]  # (weight, seconds), the partition in service excluded
    residual_s: float  # what is left of the partition in service
    waiting: tuple[tuple[float, float, float], ...] = ()  # (born, weight, seconds) per task waiting here


class BlockStore:
    """Modules for single blocks, built lazily (or all at once by ``prebuild``) from the model zoo."""

    def __init__(self, seed: int, device: str, weights: dict[str, str] | None = None) -> None:
        self.seed = seed
        self.device = device
        self.weights = weights or {}
        self._blocks: dict[tuple[str, int], Any] = {}

    def prebuild(self, allowed: dict[str, tuple[int, int]]) -> None:
        for model, (lo, hi) in allowed.items():
            for i in range(lo, hi):
                self.block(model, i)

    def warm_up(self, allowed: dict[str, tuple[int, int]], batch: dict[str, int] | None = None) -> None:
        """Run every allowed block range once on a dummy input of the right shape: the first pass of
        a process allocates and picks its kernels (ResNet-50: 160 ms instead of 90), which would
        otherwise land on the first task and overrun its modelled time."""
        import torch

        from pamdi_node.models import zoo

        for model, (lo, hi) in allowed.items():
            if lo >= hi:
                continue
            b = (batch or {}).get(model, 1)
            if lo == 0:
                x = zoo.example_input(model, b, 0)
            else:
                shape = zoo.block_infos(model, b)[lo - 1].out_shape
                x = torch.zeros(shape)
            self.run(model, lo, hi, x)

    def block(self, model: str, index: int) -> Any:
        key = (model, index)
        mod = self._blocks.get(key)
        if mod is None:
            from pamdi_node.models import zoo

            mod = zoo.build_blocks(model, index, index + 1, seed=self.seed, weights=self.weights.get(model),
                                   device=self.device)
            mod.eval()
            self._blocks[key] = mod
        return mod

    def run(self, model: str, start: int, end: int, x: Any) -> Any:
        import torch

        with torch.inference_mode():
            x = map_tensors(x, lambda t: t.to(self.device))
            for i in range(start, end):
                x = self.block(model, i)(x)
            # Back to CPU, contiguous: the wire format (frames reference this memory).
            return map_tensors(x, lambda t: t.to("cpu").contiguous())


def map_tensors(x: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to a tensor or to each tensor of a tuple (the GPT-2 top-k head returns a pair)."""
    return tuple(fn(t) for t in x) if isinstance(x, tuple | list) else fn(x)


class Executor(threading.Thread):
    def __init__(
        self,
        store: BlockStore,
        on_done: Callable[[WorkItem, Any, Timing, str | None], None],
        speed: float,
        device_time: str = "native",
        hold_for_decision: bool = True,
    ) -> None:
        super().__init__(name="pamdi-executor", daemon=True)
        self.hold_for_decision = hold_for_decision
        self.store = store
        self.on_done = on_done
        self.speed = speed
        self.device_time = devicetime.check(device_time)
        self._cv = threading.Condition()
        self._queue: list[WorkItem] = []
        self._running: WorkItem | None = None
        self._running_since = 0.0
        self._stop = False
        # Set after each item until the I/O loop has decided where that task goes next (``decided``).
        self._awaiting_decision = False
        self.busy_s = 0.0  # modelled (profile) or real compute time of everything run
        self.host_busy_s = 0.0  # real compute time on this host
        self.ran = 0
        self.overruns = 0  # ranges whose real compute overran their modelled time (profile)
        self.overrun_s = 0.0
        self.decision_waits = 0  # holds that ran into DECISION_HOLD_S (the I/O loop never answered)

    # ------------------------------------------------------------------ called from other threads
    def submit(self, item: WorkItem) -> None:
        with self._cv:
            self._queue.append(item)
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()

    def decided(self) -> None:
        """The I/O loop has handled the last completed item (its task's next partition is queued
        here, offered or sent elsewhere, or its result is on its way): pick the next item now."""
        with self._cv:
            self._awaiting_decision = False
            self._cv.notify()

    def queue_s(self, now: float) -> float:
        """Seconds of work queued here at this node's speed (what the beacons advertise)."""
        return self.queue_detail(now).total_s

    def queue_detail(self, now: float, list_waiting: bool = False) -> QueueDetail:
        """This node's queue as the simulator's ``_load``/``_self_view`` describe a worker's.

        The residual is only what is left of the partition in service (all that a waiting task of
        higher priority sits out: service is non-preemptive per partition); the rest of that task's
        model (``after_s``) is committed work of its weight, so it counts in ``by_weight``. The
        total is the same either way. ``waiting`` (only with ``list_waiting``: it costs O(queue))
        lists ``(born, weight, seconds)`` per queued item plus ``(born, weight, after_s)`` for the
        one in service.
        """
        with self._cv:
            by_weight: dict[float, float] = {}
            listed: list[tuple[float, float, float]] = []
            for w in self._queue:
                by_weight[w.weight] = by_weight.get(w.weight, 0.0) + w.est_s + w.after_s
                if list_waiting:
                    listed.append((w.task.born, w.weight, w.est_s + w.after_s))
            residual = after = 0.0
            r = self._running
            if r is not None:
                residual = max(0.0, r.est_s - (now - self._running_since))
                after = r.after_s
                if after > 0:
                    by_weight[r.weight] = by_weight.get(r.weight, 0.0) + after
                    if list_waiting:
                        listed.append((r.task.born, r.weight, after))
            total = sum(w.est_s + w.after_s for w in self._queue) + residual + after
        return QueueDetail(total, tuple(sorted((w, x) for w, x in by_weight.items() if x > 1e-12)), residual,
                           tuple(listed))

    @property
    def running_since(self) -> float | None:
        """When the item in service started (local clock), None when idle."""
        with self._cv:
            return self._running_since if self._running is not None else None

    def __len__(self) -> int:
        with self._cv:
            return len(self._queue) + (self._running is not None)

    # ------------------------------------------------------------------------- the thread itself
    def _pop(self) -> WorkItem:
        # Keys come from the policy at enqueue time (FIFO baselines key on the task's birth, PA-MDI on
        # its priority index), exactly as the simulator orders its queues; ties by source name, then
        # by arrival (the simulator's heap entries are (key, source, seq, job)).
        q = self._queue
        best = min(range(len(q)), key=lambda i: (q[i].key, q[i].task.source, q[i].seq))
        return self._queue.pop(best)

    def run(self) -> None:
        while True:
            with self._cv:
                # Hold the worker until the task that just finished a partition here has decided
                # its next step, as the simulator does (``_done`` decides, then starts the next
                # job): otherwise a queued lower-priority item starts in the gap and a TS task runs
                # one partition in two behind NTS work (blocks interleave, priorities mean nothing).
                hold_until = time.time() + DECISION_HOLD_S
                while self._awaiting_decision and not self._stop:
                    left = hold_until - time.time()
                    if left <= 0:
                        self._awaiting_decision = False
                        self.decision_waits += 1
                        break
                    self._cv.wait(left)
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                item = self._pop()
                self._running, self._running_since = item, time.time()
            t0 = time.time()
            err: str | None = None
            out: Any = None
            try:
                out = self.store.run(item.task.model, item.start, item.end, item.task.tensor)
            except Exception as e:  # a bad activation must fail the task, not the agent
                log.exception("compute of %s blocks [%d,%d) failed", item.task.id, item.start, item.end)
                err = f"compute of blocks [{item.start},{item.end}) failed: {type(e).__name__}: {e}"[:1000]
            timing = devicetime.hold(self.device_time if err is None else "native", t0, time.time(), item.est_s)
            with self._cv:
                self._running = None
                self.busy_s += timing.released - t0
                self.host_busy_s += timing.host_s
                self.ran += 1
                if devicetime.is_overrun(timing.overrun_s):
                    self.overruns += 1
                    self.overrun_s += timing.overrun_s
                self._awaiting_decision = self.hold_for_decision
            self.on_done(item, out, timing, err)
