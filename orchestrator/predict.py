"""The simulator's prediction of an emulated run, and the gap between the two.

An emulation under the ``profile`` device-time model and the simulator share the block times (the
run's own profiles, divided by each node's speed), the links (goodput and delay), the arrival
schedule and the nodes' beacon phases (same seed). What the simulator cannot know by itself is what
the agents' own software costs: the decision at every partition boundary (the executor holds the
worker meanwhile) and the serialisation of every message. ``runtime_costs`` measures both from the
run's own spans (already on the nominal time line: divided by the stretch factor),
``predict_ensemble`` charges them (``SimOptions.decision_cost_s`` / ``message_cost_s``) over several
beacon-phase draws and ``compare`` lines the two up per policy and source.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.spec import ExperimentSpec
from pamdi_node.agent.config import RunConfig
from pamdi_node.models.profile import ModelProfile

AGENT_DEFAULTS = RunConfig(node="x", config_id="defaults-only", policy="local")


@dataclass(frozen=True)
class RuntimeCosts:
    decision_s: float = 0.0  # mean dead time of a worker after a job (decision, hand-off, send)
    message_s: float = 0.0  # mean serialise + receive (deserialise) time of a data message

    def as_dict(self) -> dict[str, float]:
        return {"decision_s": round(self.decision_s, 7), "message_s": round(self.message_s, 7)}


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else 0.0


def runtime_costs(spans: Iterable[Mapping[str, Any]], device_time: str | None = None) -> RuntimeCosts:
    """Mean per-job and per-message software costs from a policy's spans.

    The decision cost is the worker's dead time after a job: from the release of one block range to
    the start of the next range on the same node, where that next range was already waiting (or is
    the same task's next partition, queued by the decision itself). It covers everything the
    executor waits out before it may start its next item: the hand-off to the I/O loop, the
    decision, and the serialisation and send of the task or its result. Without such pairs it
    falls back to the local ``decide`` spans.

    Under the ``profile`` device-time model (``device_time="profile"``) it also covers how late a
    held result was released: a compute span that ends after its modelled time (the executor's
    sleep overshoots, its thread waits for the GIL) kept the worker that much longer than the model
    says, below the overrun tolerance or not. Means, not medians: the simulator charges the cost
    after every job, so what it must get right is the total the workers spent (their load); the
    occasional slow one (a beacon handled in between, a collection pass) is part of that total, and
    under load queueing amplifies it."""
    decide: list[float] = []
    ser: list[float] = []
    recv: list[float] = []
    late: list[float] = []  # compute span beyond its modelled time (profile device time)
    by_node: dict[str, list[tuple[float, float, str, int, int]]] = {}
    enqueued: dict[tuple[str, str, int], float] = {}  # (node, task, first block) -> when queued there
    for s in spans:
        d = float(s["end"]) - float(s["start"])
        kind = s.get("kind")
        if kind == "decide" and s.get("to") == s.get("node"):  # local: no handshake or transfer inside
            decide.append(d)
        elif kind == "serialize":
            ser.append(d)
        elif kind == "recv":
            recv.append(d)
        elif kind in ("compute", "queue") and isinstance(s.get("blocks"), list | tuple) and len(s["blocks"]) == 2:
            node, task, lo = str(s.get("node")), str(s.get("task")), int(s["blocks"][0])
            if kind == "queue":
                enqueued[(node, task, lo)] = float(s["start"])
            else:
                by_node.setdefault(node, []).append((float(s["start"]), float(s["end"]), task, lo, int(s["blocks"][1])))
                # (Not under quota: there a range takes longer than modelled by design, and the
                # node's in-run speed already says so.)
                if device_time == "profile" and isinstance(s.get("model_s"), int | float):
                    late.append(max(0.0, d - float(s["model_s"])))
    gaps = []
    for node, parts in by_node.items():
        parts.sort()
        for (_, end, task, _, hi), (start, _, task2, lo2, _) in itertools.pairwise(parts):
            if start < end:
                continue
            continuation = task == task2 and hi == lo2
            if continuation or enqueued.get((node, task2, lo2), math.inf) <= end:
                gaps.append(start - end)
    decision = (_mean(gaps) if len(gaps) >= 5 else _mean(decide)) + _mean(late)
    return RuntimeCosts(max(0.0, decision), max(0.0, _mean(ser) + _mean(recv)))


def _merge_manifest_quietly(run_dir: Path, extra: Mapping[str, Any]) -> None:
    from results.trace import merge_manifest

    with contextlib.suppress(OSError, ValueError):
        merge_manifest(run_dir, dict(extra))


def quota_speeds(spans: Iterable[Mapping[str, Any]], spec: ExperimentSpec, min_s: float = 0.5
                 ) -> dict[str, float]:
    """Each node's speed as a quota run measured it: its nominal speed times the profiled (modelled)
    time of the ranges it computed over their real time, for nodes with at least ``min_s`` of it."""
    from orchestrator.devices import node_speed

    model: dict[str, float] = {}
    host: dict[str, float] = {}
    for s in spans:
        if s.get("kind") == "compute" and s.get("model_s") is not None and s.get("host_s"):
            node = str(s.get("node"))
            model[node] = model.get(node, 0.0) + float(s["model_s"])
            host[node] = host.get(node, 0.0) + float(s["host_s"])
    nominal = {n.name: node_speed(n) for n in spec.nodes}
    return {n: nominal[n] * model[n] / host[n] for n in model
            if n in nominal and host[n] >= min_s and model[n] > 0}


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Replicas of a prediction (beacon-phase draws, ``SimOptions.replica``): near saturation the FIFO
# multi-path policies' mean moves by 25% of itself with the phases alone (paper-5node-resnet56-loaded,
# MS-MDI: sd 5.4 ms on 22.6 over 20 draws), so one draw predicts a draw, not the run; PA-MDI's TS
# moves by 1%. Eight draws cost a fraction of a second per policy on the shipped specs.
DEFAULT_REPLICAS = 8


@dataclass(frozen=True)
class Prediction:
    """The simulator's mean of one (policy, source) over ``replicas`` beacon-phase draws."""

    mean_s: float | None  # the mean over the draws of each draw's mean
    sd_s: float | None  # across the draws (None with one)
    replicas: int
    first_s: float | None  # the seed's own draw (replica 0): what a single simulation gives

    @property
    def cv(self) -> float | None:
        """The draws' spread relative to their mean: how chaotic this (policy, source) is here."""
        return None if self.sd_s is None or not self.mean_s else self.sd_s / self.mean_s

    def as_dict(self) -> dict[str, Any]:
        return {"mean_s": self.mean_s, "sd_s": self.sd_s, "replicas": self.replicas, "first_s": self.first_s}

    @classmethod
    def of(cls, means: Sequence[float | None]) -> Prediction:
        """From each draw's mean, in replica order (None: a draw with nothing completed; then no mean)."""
        known = [m for m in means if m is not None]
        mean = statistics.fmean(known) if known and len(known) == len(means) else None
        sd = statistics.stdev(known) if mean is not None and len(known) > 1 else None
        return cls(mean, sd, len(means), means[0] if means else None)


def draw_means(spec: ExperimentSpec, policy: str, options: Any, replicas: Iterable[int], **simulate_kwargs: Any
               ) -> Iterator[dict[str, float | None]]:
    """Each source's mean in each beacon-phase draw of ``replicas`` (``options``, a ``SimOptions``,
    with its replica set), one draw at a time: a ``SimulationError`` ends the draws where it happens."""
    import dataclasses

    from orchestrator.metrics import summarize_run
    from orchestrator.simulator import simulate

    prios = {s.name: s.priority for s in spec.sources}
    for replica in replicas:
        res = simulate(spec, policy, options=dataclasses.replace(options, replica=replica), **simulate_kwargs)
        yield {src: st.get("mean_s") for src, st in summarize_run(policy, res.records, prios)["sources"].items()}


def predict_ensemble(spec: ExperimentSpec, policies: Sequence[str], profiles: Mapping[str, ModelProfile],
                     costs: Mapping[str, RuntimeCosts] | None = None, shaper_stretch: float | None = None,
                     replicas: int = DEFAULT_REPLICAS) -> dict[tuple[str, str], Prediction]:
    """The simulator's prediction per (policy, source) for ``spec`` with the run's profiles and
    costs, over ``replicas`` beacon-phase draws of the same arrival schedule. ``shaper_stretch``: the
    run shaped its links with tbf at this stretch (its bucket is modelled). The handshake window and
    timeout are the agents' defaults (``agent.config.RunConfig``)."""
    from orchestrator.simulator import SimOptions, SimulationError

    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    out: dict[tuple[str, str], Prediction] = {}
    for policy in policies:
        c = (costs or {}).get(policy, RuntimeCosts())
        opts = SimOptions(beacon_period_s=spec.beacon_period_ms / 1000.0, decision_cost_s=c.decision_s,
                          message_cost_s=c.message_s, rtc_window_s=AGENT_DEFAULTS.grant_window_s,
                          rtc_timeout_s=AGENT_DEFAULTS.rtc_timeout_s, shaper_stretch=shaper_stretch)
        draws: dict[str, list[float | None]] = {}
        with contextlib.suppress(SimulationError):  # the draws so far count
            for means in draw_means(spec, policy, opts, range(replicas), profiles=dict(profiles)):
                for src, mean in means.items():
                    draws.setdefault(src, []).append(mean)
        for src, means in draws.items():
            out[(policy, src)] = Prediction.of(means)
    return out


def compare(emulated: Mapping[str, Any], predicted: Mapping[tuple[str, str], Prediction]) -> list[dict[str, Any]]:
    """One row per (policy, source): emulated and simulated means and the relative gap; ``z``: the
    gap in the simulated draws' standard deviations (how plausible the run is as one more draw)."""
    rows = []
    for run in emulated.get("runs", []):
        for src, stats in run["sources"].items():
            p = predicted.get((run["policy"], src))
            emu, sim = stats.get("mean_s"), None if p is None else p.mean_s
            gap = (emu - sim) / sim if emu is not None and sim else None
            sd = None if p is None else p.sd_s
            rows.append({"policy": run["policy"], "source": src, "completed": stats.get("completed"),
                         "failed": stats.get("failed"), "emulated_mean_s": emu, "sim_mean_s": sim, "gap": gap,
                         "sim_sd_s": sd, "sim_replicas": None if p is None else p.replicas,
                         "sim_first_s": None if p is None else p.first_s,
                         "z": (emu - sim) / sd if emu is not None and sim is not None and sd else None,
                         "overrun_fraction": run.get("overrun_fraction"), "faithful": run.get("faithful")})
    return rows


def shorten(spec: ExperimentSpec, max_s: float) -> ExperimentSpec:
    """``spec`` with every source's sample count cut so that arrivals end within ``max_s`` seconds,
    at the same loads (intervals unchanged)."""

    sources = []
    for s in spec.sources:
        span = s.samples * s.interval_s
        if s.interval_s > 0 and s.start_ms / 1000.0 + span > max_s:
            n = max(1, math.floor(max(0.0, max_s - s.start_ms / 1000.0) / s.interval_s))
            s = s.model_copy(update={"samples": n})
        sources.append(s)
    return spec.model_copy(update={"sources": tuple(sources)})


def run_and_compare(spec: ExperimentSpec, backend: Any, run_dir: Path, options: Any, base_dir: Path | None = None,
                    on_progress: Any = None, runner: Any = None, replicas: int = DEFAULT_REPLICAS
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Emulate ``spec`` with ``backend`` (or with ``runner``, built already) and predict each (policy,
    source) mean with the same profiles, charging each policy's measured runtime costs, over
    ``replicas`` beacon-phase draws; returns (emulated summary, ``compare`` rows)."""
    from orchestrator.runner import Runner

    if runner is None:
        runner = Runner(spec, backend, run_dir, options, base_dir=base_dir, on_progress=on_progress)
    runner.prepare()
    summary = runner.run()
    costs = {r.policy: runtime_costs(r.spans, runner.device_time) for r in runner.results}
    shaped = backend.shapes_with_token_bucket
    stretch = runner.stretch if shaped else None
    if "quota_calibration" in runner.timing:  # a quota run: the nodes' real speeds under their quotas
        from orchestrator.netem.calibrate import calibrated_spec

        # A bare process alone in a quota (the calibration) computes faster than an agent whose I/O,
        # source and serialisation threads share that quota, and how much the nodes slow each other
        # down depends on how many compute at once (the policy): where a policy's run computed enough
        # on a node, its speed is what that node achieved in that run; else the calibrated one.
        cal = runner.timing["quota_calibration"]
        predicted: dict[tuple[str, str], Prediction] = {}
        for r in runner.results:
            in_run = quota_speeds(r.spans, spec)
            cal.setdefault("in_run_speeds", {})[r.policy] = {n: round(v, 4) for n, v in in_run.items()}
            model = calibrated_spec(runner.nominal, {"nodes": {n: {"speed": in_run.get(n, e["speed"])}
                                                     for n, e in cal["nodes"].items()}})
            predicted.update(predict_ensemble(model, [r.policy], runner.profiles, costs, stretch, replicas))
        _merge_manifest_quietly(Path(run_dir), {"emulation": runner.timing})  # with the in-run speeds
    else:
        # runner.nominal: the spec as run (GPU nodes' speeds from their profiles), unstretched.
        predicted = predict_ensemble(runner.nominal, [r.policy for r in runner.results], runner.profiles, costs,
                                     stretch, replicas)
    rows = compare(summary, predicted)
    for row in rows:
        row["costs"] = costs[row["policy"]].as_dict()
    # The prediction beside each measured mean, in summary.json too (the report shows both).
    for run in summary.get("runs", []):
        run["runtime_costs"] = costs[run["policy"]].as_dict() if run["policy"] in costs else None
        for src, stats in run["sources"].items():
            p = predicted.get((run["policy"], src))
            stats["sim_mean_s"] = None if p is None else p.mean_s
            stats["sim_sd_s"] = None if p is None else p.sd_s
            stats["sim_replicas"] = None if p is None else p.replicas
    with contextlib.suppress(OSError):
        (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary, rows
