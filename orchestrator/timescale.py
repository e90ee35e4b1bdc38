"""Host headroom and time stretch: run an emulation k times slower when the host cannot keep up.

Under the ``profile`` device-time model an agent computes a block range at host speed and holds it
until its modelled time has passed, so the run is faithful only while the host has the CPU for
every node computing at once. ``estimate_headroom`` predicts the CPU the agents need at peak from a
simulation of the same spec (each computing node needs ``speed x host/profile`` of a core for the
whole modelled duration) and, when that does not fit this host's cores with a margin, picks a
stretch factor ``k``: every modelled duration of the run (block times, link rates, delays,
arrivals, beacons, timeouts, failures) is scaled by ``k`` (``stretch_spec``) and the runner divides
every reported time by ``k``. This is time dilation as DieCast or time-warped network emulation do
it, in the toolkit's own clock rather than in the kernel. The factor goes in the manifest and the
summary; a refused run says what would fit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.spec import ExperimentSpec
from pamdi_node.models.profile import ModelProfile

# Share of the host's cores the agents' compute may take at the 95th percentile of the predicted
# demand: the rest is for their I/O threads, serialisation, the kernel's shaping, beacons and the
# orchestrator. Measured on the 2-core host with the 5-node ResNet-50 spec under PA-MDI (peak 1.6
# CPUs predicted): k = 1.2 (budget 0.7) overran 21% of block ranges and missed the simulated means
# by 12-13%; k = 1.6 (0.5) overran 4% and missed by 1-3%; k = 2.2 overran 0.4%, missed by 1.5%.
CORE_BUDGET = 0.5
# A single node may use at most this share of a core while it computes: the slack absorbs Python
# overhead around the blocks and the host's timing noise (a speed-1.0 node on its own host profile
# would otherwise overrun every block).
NODE_BUDGET = 0.75
DEMAND_QUANTILE = 0.95
# Real CPU an agent spends around one partition besides its blocks (the decision, the hand-offs
# between its threads, messages and their serialisation), measured on the 2-core host: about 2 ms
# per partition with ResNet-56 partitions of 1.6 ms. It does not shrink with the modelled device,
# so short partitions need more stretch than their compute alone says.
JOB_OVERHEAD_CPU_S = 0.002
MAX_STRETCH = 12.0


@dataclass(frozen=True)
class Headroom:
    stretch: float  # k >= 1
    peak_cpus: float  # predicted CPU demand at the DEMAND_QUANTILE, unstretched
    mean_cpus: float
    max_node_cpus: float  # the fastest node's need while computing
    cores: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"stretch": self.stretch, "peak_cpus": round(self.peak_cpus, 3), "mean_cpus": round(self.mean_cpus, 3),
                "max_node_cpus": round(self.max_node_cpus, 3), "cores": self.cores, "reason": self.reason}


class HeadroomError(ValueError):
    """The run does not fit this host even stretched by MAX_STRETCH."""


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def demand_quantile(intervals: Sequence[tuple[float, float, float]], q: float) -> tuple[float, float]:
    """(time-weighted ``q`` quantile, mean) of the summed demand of ``(start, end, cpus)`` intervals."""
    if not intervals:
        return 0.0, 0.0
    edges: list[tuple[float, float]] = []
    for s, e, c in intervals:
        if e > s:
            edges += [(s, c), (e, -c)]
    if not edges:
        return 0.0, 0.0
    edges.sort()
    t0, t_end = edges[0][0], edges[-1][0]
    level, prev = 0.0, t0
    spans: list[tuple[float, float]] = []  # (level, duration)
    for t, d in edges:
        if t > prev:
            spans.append((level, t - prev))
        level += d
        prev = t
    total = t_end - t0
    if total <= 0:
        return 0.0, 0.0
    mean = sum(lv * dt for lv, dt in spans) / total
    acc = 0.0
    for lv, dt in sorted(spans):
        acc += dt
        if acc >= q * total:
            return lv, mean
    return max(lv for lv, _ in spans), mean


def estimate_headroom(spec: ExperimentSpec, policies: Sequence[str], profiles: Mapping[str, ModelProfile],
                      cores: int | None = None, host_ratio: float = 1.0) -> Headroom:
    """The stretch factor this host needs for ``spec`` under ``policies`` (profile device time).

    ``host_ratio`` is this host's real block time over the profile's (1.0 for the host's own profile).
    """
    from orchestrator.devices import node_speed
    from orchestrator.simulator import SimulationError, simulate

    cores = cores or host_cores()
    speeds = {n.name: node_speed(n) * host_ratio for n in spec.nodes}
    peak = mean = 0.0
    for policy in policies:
        try:
            res = simulate(spec, policy, profiles=dict(profiles))
        except SimulationError:
            continue
        jobs = getattr(res, "compute", None)
        if jobs:
            p, m = demand_quantile([(s, e, speeds[n] + JOB_OVERHEAD_CPU_S / (e - s)) for n, s, e in jobs if e > s],
                                   DEMAND_QUANTILE)
        else:  # no interval log: the average load, every node busy in proportion
            m = sum(b / max(res.end_s, 1e-9) * speeds[n] for n, b in res.busy_s.items())
            p = min(sum(speeds.values()), 2 * m)
        peak, mean = max(peak, p), max(mean, m)
    max_node = max(speeds.values())
    k_cores = peak / (CORE_BUDGET * cores)
    k_node = max_node / NODE_BUDGET
    k = max(1.0, k_cores, k_node)
    k = math.ceil(k * 20 - 1e-9) / 20  # in steps of 0.05, for readable manifests
    if k_cores >= k_node and k_cores > 1:
        why = (f"predicted peak demand {peak:.2f} CPUs > {CORE_BUDGET:.0%} of {cores} cores")
    elif k_node > 1:
        why = f"the fastest node needs {max_node:.2f} of a core while computing (> {NODE_BUDGET:.0%})"
    else:
        why = "fits: no stretch"
    if k > MAX_STRETCH:
        raise HeadroomError(
            f"this host ({cores} cores) would need time stretched {k:.1f}x (> {MAX_STRETCH:g}) for {spec.name}: {why}; "
            f"lower the node speeds or loads (a peak of about {CORE_BUDGET * cores * MAX_STRETCH:.1f} CPUs fits)")
    return Headroom(k, peak, mean, max_node, cores, why)


def run_stretch(spec: ExperimentSpec, policies: Sequence[str], profiles: Mapping[str, ModelProfile],
                asked: float | None = None) -> tuple[float, dict[str, Any]]:
    """The stretch factor of a run (``asked``, else what this host's headroom needs for ``spec``
    under ``policies``) and what the manifest says about it (``headroom``, ``host_ratio``)."""
    if asked is not None:
        k = float(asked)
        return k, {"headroom": {"stretch": k, "reason": "asked"}}
    from orchestrator.hostprofiles import host_ratio

    seen: dict[tuple[str, int], float] = {}
    for p in profiles.values():
        if (p.model, p.batch) not in seen:
            seen[(p.model, p.batch)] = host_ratio(p)
    ratio = max(seen.values(), default=1.0)
    head = estimate_headroom(spec, policies, profiles, host_ratio=ratio)
    return head.stretch, {"host_ratio": {f"{m}_b{b}": round(r, 3) for (m, b), r in seen.items()},
                          "headroom": head.as_dict()}


def stretch_spec(spec: ExperimentSpec, k: float) -> ExperimentSpec:
    """``spec`` with every modelled duration ``k`` times longer (speeds and rates divided by ``k``)."""
    if k == 1.0:
        return spec
    from orchestrator.devices import node_speed

    nodes = tuple(n.model_copy(update={"speed": node_speed(n) / k}) for n in spec.nodes)

    def link(lk):  # type: ignore[no-untyped-def]
        return lk.model_copy(update={"rate_mbit": lk.rate_mbit / k, "delay_ms": lk.delay_ms * k,
                                     "jitter_ms": lk.jitter_ms * k})

    sources = tuple(s.model_copy(update={
        "interval_ms": s.interval_s * 1000.0 * k if s.interval_s > 0 else None, "rate_hz": None,
        "start_ms": s.start_ms * k}) for s in spec.sources)
    failures = tuple(f.model_copy(update={
        "at_s": f.at_s * k, "recover_after_s": None if f.recover_after_s is None else f.recover_after_s * k})
        for f in spec.failures)
    return spec.model_copy(update={
        "nodes": nodes, "links": tuple(link(lk) for lk in spec.links),
        "full_mesh": None if spec.full_mesh is None else link(spec.full_mesh),
        "sources": sources, "failures": failures, "beacon_period_ms": spec.beacon_period_ms * k,
        "policy_params": stretch_policy_params(spec.policy_params, k),
    })


# Policy parameters that are rates (per second): on a time line k times longer they are k times
# smaller, or a stretched run would weigh them k times more than the model (PA-MDI's aging would
# let an NTS task overtake TS work k times sooner).
RATE_PARAMS = ("aging",)


def stretch_policy_params(params: Mapping[str, object], k: float) -> dict[str, object]:
    """``params`` with every policy's rate parameters (given or default) divided by ``k``, scoped
    to that policy (``pa-mdi.aging``) so that each policy keeps its own value."""
    import inspect

    from pamdi_node.policies import POLICIES, params_for

    out = dict(params)
    for name, cls in POLICIES.items():
        sig = inspect.signature(cls).parameters
        given = params_for(name, params)
        for p in RATE_PARAMS:
            if p in sig:
                value = given.get(p, sig[p].default)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"{name}.{p}"] = float(value) / k
    for p in RATE_PARAMS:
        out.pop(p, None)  # an unscoped value now lives in each policy's scoped key
    return out
