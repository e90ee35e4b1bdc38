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
from typing import Any

from pamdi_node import devicetime
from pamdi_node.agent.tasks import WorkItem
from pamdi_node.devicetime import Timing
from pamdi_node.worker.queue import QueueDetail, QueueLedger

log = logging.getLogger(__name__)

# Longest the executor waits for the I/O loop's decision on a task that finished a partition here
# (a safety net: the loop answers in well under a millisecond unless its CPU quota is exhausted).
DECISION_HOLD_S = 0.5


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
        # The worker's queue (pamdi_node.worker.queue, the simulator's too), guarded by ``_cv``.
        self._ledger: QueueLedger[WorkItem] = QueueLedger()
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
            self._ledger.push(item, item.key, item.task.source)
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
        """This node's queue as the simulator describes a worker's (``QueueLedger.detail``)."""
        with self._cv:
            return self._ledger.detail(now, list_waiting)

    @property
    def running_since(self) -> float | None:
        """When the item in service started (local clock), None when idle."""
        with self._cv:
            return self._running_since if self._ledger.running is not None else None

    def __len__(self) -> int:
        with self._cv:
            return len(self._ledger) + (self._ledger.running is not None)

    # ------------------------------------------------------------------------- the thread itself
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
                while not self._ledger and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                # Served by the policy's queue_key, ties by source then arrival, as the simulator.
                item = self._ledger.pop()
                assert item is not None
                self._running_since = time.time()
                self._ledger.start(item, self._running_since + item.est_s)
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
                self._ledger.finish()
                self.busy_s += timing.released - t0
                self.host_busy_s += timing.host_s
                self.ran += 1
                if devicetime.is_overrun(timing.overrun_s):
                    self.overruns += 1
                    self.overrun_s += timing.overrun_s
                self._awaiting_decision = self.hold_for_decision
            self.on_done(item, out, timing, err)
