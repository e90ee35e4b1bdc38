"""Task records and spans after a policy run: read back, put on the orchestrator's clock and the
nominal time line, and checked against the modelled device times (``fidelity``)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.metrics import summarize_run
from orchestrator.spec import ExperimentSpec
from pamdi_node import devicetime
from pamdi_node.agent.config import task_id
from pamdi_node.records import COMPLETED, FAILED, AgentRecord, RecordError, Span, TaskRecord

log = logging.getLogger(__name__)


@dataclass
class PolicyRun:
    policy: str
    records: list[TaskRecord]
    spans: list[Span]
    outputs: dict[str, Any]
    summary: dict[str, Any]
    stats: dict[str, Any]
    timed_out: bool = False


def write_policy_traces(out_dir: Path, policy: str, records: Sequence[TaskRecord], spans: Sequence[Mapping[str, Any]],
                        stats: Mapping[str, Any]) -> None:
    """``<run>/<policy>/tasks.jsonl``, ``spans.jsonl`` and ``agents.json`` (each agent's stats)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "tasks.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps({"policy": policy, **r.to_dict()}) + "\n")
    with (out_dir / "spans.jsonl").open("w") as f:
        for s in spans:
            f.write(json.dumps({"policy": policy, **s}) + "\n")
    (out_dir / "agents.json").write_text(json.dumps(stats, indent=2, default=str) + "\n")


def agents_cpu_cores(stats: Mapping[str, Any]) -> float | None:
    """CPU the agents took (all their threads, since configured), in cores of this host; None when
    no agent reported its CPU time."""
    cpu = [(float(st["cpu_s"]), float(st["wall_s"])) for st in stats.values()
           if isinstance(st, dict) and isinstance(st.get("cpu_s"), int | float)]
    return round(sum(c for c, _ in cpu) / max(w for _, w in cpu), 3) if cpu else None


def agent_errors(stats: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per node, the agent's own failures during the policy run (``internal_errors`` since it was
    configured, and the last one): a run with any is not faithful, whatever its numbers say."""
    out: dict[str, dict[str, Any]] = {}
    for node, st in sorted(stats.items()):
        n = st.get("internal_errors") if isinstance(st, dict) else None
        if isinstance(n, int) and n > 0:
            out[node] = {"count": n, "last": str(st.get("last_internal_error") or "")[:300]}
    return out


def policy_summary(policy: str, records: Sequence[TaskRecord], spans: Sequence[Mapping[str, Any]],
                   stats: Mapping[str, Any], priorities: Mapping[str, float], device_time: str,
                   stretch: float) -> dict[str, Any]:
    """A policy run's summary: the metrics of its records, how faithfully the agents kept the modelled
    device times, the agents' own failures (any makes the run not faithful: e.g. a node whose beacons
    failed is dropped by its peers, a smaller network than the spec's) and the CPU they took."""
    summary = summarize_run(policy, list(records), dict(priorities))
    summary.update(fidelity(spans, device_time, stretch))
    why = []
    if summary.get("faithful") is False:
        why.append(f"{summary['overrun_fraction']:.0%} of block ranges overran their modelled time "
                   f"(more than {devicetime.FAITHFUL_MAX_OVERRUN_FRACTION:.0%}: the host could not keep up)")
    errors = agent_errors(stats)
    if errors:
        summary.update(agent_errors=errors, faithful=False)
        why.append("agents failed internally: " + "; ".join(f"{n} x{e['count']} ({e['last']})"
                                                             for n, e in errors.items()))
    if why:
        summary["unfaithful"] = why
    cores = agents_cpu_cores(stats)
    if cores is not None:  # how much of the host the agents really took (all their threads), since configured
        summary["agents_cpu_cores"] = cores
    return summary


def records_on_disk(path: Path, config_id: str | None) -> list[dict[str, Any]]:
    """One policy run's task records from a node's own trace file (``<node>.tasks.jsonl``, which
    every policy appends to): those stamped with that run's ``config_id``; a line cut short by a
    SIGKILL is skipped."""
    if config_id is None or not path.is_file():
        return []
    out = []
    with path.open(errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("config_id") == config_id and isinstance(rec.get("task"), str):
                out.append(rec)
    return out


def unstretch(records: list[TaskRecord], spans: list[dict[str, Any]], k: float, t0: float
              ) -> tuple[list[TaskRecord], list[dict[str, Any]]]:
    """Divide every time by the stretch factor ``k`` around the policy's start ``t0`` (orchestrator clock)."""

    def back(t: float) -> float:
        return t0 + (t - t0) / k

    recs = [dataclasses.replace(r, born_s=back(r.born_s) if not math.isnan(r.born_s) else r.born_s,
                                done_s=None if r.done_s is None else back(r.done_s)) for r in records]
    out = []
    for sp in spans:
        sp = dict(sp, start=back(sp["start"]), end=back(sp["end"]))
        for key in ("model_s", "host_s", "overrun_s"):
            if isinstance(sp.get(key), int | float):
                sp[key] = sp[key] / k
        out.append(sp)
    return recs, out


def align(span: dict[str, Any], offsets: Mapping[str, float]) -> dict[str, Any]:
    """Shift a span onto the orchestrator clock (offset = agent clock - orchestrator clock)."""
    s = dict(span)
    end_off = offsets.get(s.get("node", ""), 0.0)
    start_off = offsets.get(s["peer"], 0.0) if s.get("kind") in ("transfer", "result") and "peer" in s \
        else end_off
    s["start"] = s["start"] - start_off
    s["end"] = s["end"] - end_off
    return s


def task_records(raw: list[dict[str, Any]], spec: ExperimentSpec, offsets: Mapping[str, float],
                 killed: set[str] | frozenset[str], missing_reason: str) -> list[TaskRecord]:
    """One record per task of the spec (a task no agent reported is failed with ``missing_reason``,
    or "source node X was down" when the spec killed its source node), on the orchestrator clock."""
    by_id: dict[str, AgentRecord] = {}
    for raw_rec in raw:
        try:
            rec = AgentRecord.from_dict(raw_rec)
        except RecordError as err:  # counted as missing below, with the reason in the log
            log.warning("a task record is refused: %s", err)
            continue
        by_id.setdefault(rec.task, rec)
    out: list[TaskRecord] = []
    for src in spec.sources:
        off = offsets.get(src.node, 0.0)
        for i in range(src.samples):
            tid = task_id(src.name, i)
            r = by_id.get(tid)
            if r is None:
                why = (f"source node {src.node} was down (killed by the spec's failures)"
                       if src.node in killed else missing_reason)
                out.append(TaskRecord(src.name, tid, math.nan, None, FAILED, why, extra={"index": i}))
                continue
            nodes = [src.node, *[p[0] for p in r.placements], src.node]
            hops = sum(1 for a, b in itertools.pairwise(nodes) if a != b)
            ok = r.status == COMPLETED
            out.append(TaskRecord(
                src.name, tid, r.born - off, (r.done - off) if ok else None, r.status, r.reason, r.placements, hops,
                extra={"index": i, "model": src.model},
            ))
    return out


def fidelity(spans: Sequence[Mapping[str, Any]], device_time: str, stretch: float) -> dict[str, Any]:
    """How faithfully the agents kept to the modelled device times (profile device time): the share of
    compute spans that overran by more than ``devicetime.OVERRUN_TOLERANCE_S`` (in real seconds), the
    overrun as a share of the modelled compute, and whether the run counts as faithful."""
    compute = [s for s in spans if s.get("kind") == "compute" and "model_s" in s]
    out: dict[str, Any] = {"device_time": device_time, "time_stretch": stretch}
    if device_time != "profile" or not compute:
        return out
    tol = devicetime.OVERRUN_TOLERANCE_S / stretch  # spans are back on the nominal time line
    over = [float(s.get("overrun_s") or 0.0) for s in compute]
    modelled = math.fsum(float(s["model_s"]) for s in compute)
    frac = sum(1 for o in over if o > tol) / len(compute)
    out.update({"compute_spans": len(compute), "overrun_fraction": round(frac, 4),
                "overrun_share": round(math.fsum(over) / modelled, 4) if modelled > 0 else 0.0,
                "faithful": frac <= devicetime.FAITHFUL_MAX_OVERRUN_FRACTION})
    return out
