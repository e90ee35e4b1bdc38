"""Sources: generate a source's data items at the spec's rate and hand them to the agent.

Inputs are seeded synthetic samples by default (``zoo.example_input`` with the seed
``input_seed(run_seed, source, index)``, so the orchestrator and the tests can rebuild every input and
compare against the monolithic model). With ``data`` set to a ``.npy`` file (an array whose first axis
indexes samples, e.g. a CIFAR-10 batch converted to float32 NCHW, or token ids), sample ``i`` is row
``i mod N`` (with a batch axis added when the row lacks one).

Arrivals are periodic (``interval_s``) or Poisson with that mean (seeded); ``interval_s == 0`` submits
everything at ``start_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pamdi_node.agent.config import AgentSource, input_seed


def load_data(path: str) -> Any:
    import numpy as np

    if not path.endswith(".npy"):
        raise ValueError(f"source data {path!r}: only .npy arrays are supported (samples on the first axis)")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def make_input(src: AgentSource, run_seed: int, index: int, data: Any = None) -> Any:
    import torch

    if data is not None:
        row = torch.from_numpy(data[index % len(data)].copy())
        return row if row.dim() > 1 and src.batch == row.shape[0] else row.unsqueeze(0)
    from pamdi_node.models import zoo

    return zoo.example_input(src.model, batch=src.batch, seed=input_seed(run_seed, src.name, index))


class SourceThread(threading.Thread):
    def __init__(self, src: AgentSource, run_seed: int, t0: float,
                 submit: Callable[[AgentSource, int, Any, float], None], skip_due: bool = False) -> None:
        super().__init__(name=f"pamdi-source-{src.name}", daemon=True)
        self.src = src
        self.run_seed = run_seed
        self.t0 = t0
        self.submit = submit
        self.stopped = threading.Event()
        self.submitted = 0
        self.skipped = 0
        # Resuming after a restart: items whose time passed before this thread started are skipped.
        self.skip_before = time.time() if skip_due else -float("inf")
        self.data = load_data(src.data) if src.data else None

    def run(self) -> None:
        from pamdi_node.arrivals import arrival_offsets

        s = self.src
        for i, offset in enumerate(arrival_offsets(s.name, self.run_seed, s.samples, s.interval_s, s.arrival,
                                                   s.start_s)):
            if self.t0 + offset < self.skip_before:
                self.skipped += 1
                continue
            wait = self.t0 + offset - time.time()
            if wait > 0 and self.stopped.wait(wait):
                return
            if self.stopped.is_set():
                return
            x = make_input(self.src, self.run_seed, i, self.data)
            self.submit(self.src, i, x, time.time())
            self.submitted += 1
