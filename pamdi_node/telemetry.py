"""Per-task, per-hop telemetry: spans and task records, kept in memory and appended as JSONL.

A span is one interval of a task's life on one node, on that node's own clock (``time.time()``):

- ``queue``: waiting in the executor queue before a block range runs;
- ``compute``: running blocks ``[start, end)`` (``blocks``), speed padding included;
- ``decide``: the policy's next-hop decision (and the RTC/CTC exchange when the policy uses one);
- ``serialize``: building the frames of a task or result message;
- ``transfer``: from the sender starting to serialise (``start``, on the *sender's* clock, named by
  ``peer``) to the receiver having decoded it (``end``, receiver clock);
- ``result``: the same for the final result travelling back to the source.

The orchestrator estimates every node's clock offset NTP-style and shifts ``start``/``end`` onto its
own clock (``transfer``/``result`` starts with the sender's offset), so spans of different nodes line up.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pamdi_node.records import AgentRecord, Span


class Telemetry:
    """Thread-safe sink for spans and task records; writes ``<node>.spans.jsonl`` / ``<node>.tasks.jsonl``."""

    # Spans/records kept in memory for ``collect`` (beyond that they are only in the JSONL files).
    def __init__(self, node: str, trace_dir: str | Path | None = None, keep: int = 300_000,
                 config_id: str | None = None) -> None:
        self.node = node
        # Stamped on every task record: the files gather every configuration (policy run) of the
        # node, and a run reads back its own records from them when the node died (runner.py).
        self.config_id = config_id
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._records: list[dict[str, Any]] = []
        self._keep = keep
        self._files: dict[str, IO[str]] = {}
        if trace_dir is not None:
            d = Path(trace_dir)
            d.mkdir(parents=True, exist_ok=True)
            self._files = {
                "spans": (d / f"{node}.spans.jsonl").open("a", buffering=1 << 16),
                # Line-buffered: one line per finished task, on disk at once, so that a SIGKILLed
                # source node's records survive it (spans, many per task, are flushed every second).
                "tasks": (d / f"{node}.tasks.jsonl").open("a", buffering=1),
            }

    def span(self, kind: str, task: str, source: str, start: float, end: float, **extra: Any) -> None:
        rec = {"node": self.node, "kind": kind, "task": task, "source": source, "start": start, "end": end, **extra}
        self._add("spans", self._spans, rec)

    def record(self, rec: AgentRecord) -> None:
        """A task's end at its source: in memory for ``collect``, stamped with node and configuration."""
        tag = {"config_id": self.config_id} if self.config_id is not None else {}
        self._add("tasks", self._records, {"node": self.node, **tag, **rec.to_dict()})

    def _add(self, kind: str, into: list[Any], rec: Mapping[str, Any]) -> None:
        with self._lock:
            if len(into) < self._keep:
                into.append(rec)
            f = self._files.get(kind)
            if f is not None:
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def snapshot(self) -> tuple[list[dict[str, Any]], list[Span]]:
        with self._lock:
            return list(self._records), list(self._spans)

    def flush(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.flush()

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files = {}


def ntp_offset(t0: float, t1: float, t2: float, t3: float) -> tuple[float, float]:
    """Clock offset of a remote (remote - local) and round-trip delay from one request/response.

    ``t0`` local send, ``t1`` remote receive, ``t2`` remote send, ``t3`` local receive (RFC 5905)."""
    offset = ((t1 - t0) + (t2 - t3)) / 2.0
    delay = (t3 - t0) - (t2 - t1)
    return offset, delay
