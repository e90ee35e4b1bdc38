"""Discrete-event simulation of an experiment spec under one policy.

``simulate(spec, policy)`` builds the workers, links and sources of a spec (profiles scaled by each
node's speed), runs the engine (``engine.py``; model and rationale there) and returns a
``SimResult`` with one ``TaskRecord`` per task. A link that names a radio ``scenario`` follows the
scenario's points over time (``link_schedule``), as the netns backend drives it. ``run_policies``
runs several policies and returns the ``metrics.summarize`` JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator import workload
from orchestrator.devices import node_speed
from orchestrator.metrics import summarize_run
from orchestrator.simulator.engine import Simulator
from orchestrator.simulator.inputs import (
    FailureConfig,
    LinkConfig,
    LinkSchedule,
    NodeConfig,
    SimOptions,
    SimResult,
    SimSource,
    SimulationError,
)
from orchestrator.spec import ExperimentSpec, Link
from pamdi_node.models.profile import ModelProfile
from pamdi_node.policies.types import Policy, SourceView

__all__ = [
    "LinkSchedule",
    "SimOptions",
    "SimResult",
    "SimulationError",
    "Simulator",
    "build_simulator",
    "link_schedule",
    "load_profiles",
    "make_policy",
    "run_policies",
    "simulate",
    "source_views",
]


def link_schedule(link: Link) -> LinkSchedule | None:
    """The time-varying physical link of a spec link that names a radio ``scenario`` (None for a
    constant link). Same semantics as the netns backend: the scenario's points from t = 0 (the
    link's own rate/delay/loss are only what the agents are told), looping every ``period`` when
    the scenario loops. A scenario without points (a Colosseum-only entry) cannot be simulated."""
    if link.scenario is None:
        return None
    import radio_scenarios

    try:
        sc = radio_scenarios.get(link.scenario)
    except radio_scenarios.ScenarioError as err:
        raise SimulationError(f"link {link.a}-{link.b}: {err}") from None
    if not sc.shapeable:
        raise SimulationError(f"link {link.a}-{link.b}: scenario {link.scenario!r} has no link profile to simulate "
                              "(a Colosseum-only entry; import a measured one with `pamdi scenarios import-iperf3`)")
    points = tuple((p.t_s, p.rate_mbit * 1e6, p.delay_ms / 1000.0, p.loss) for p in sc.points)
    return LinkSchedule(name=sc.name, points=points, period_s=sc.period if sc.loop else 0.0)


@contextlib.contextmanager
def _as_simulation_error() -> Iterator[None]:
    """The workload's errors, as the simulator's callers catch them."""
    try:
        yield
    except workload.WorkloadError as err:
        raise SimulationError(str(err)) from None


def load_profiles(spec: ExperimentSpec, *, base_dir: str | Path | None = None,
                  overrides: Mapping[str, ModelProfile] | None = None) -> dict[str, ModelProfile]:
    """``workload.load_profiles``, failing as a ``SimulationError``."""
    with _as_simulation_error():
        return workload.load_profiles(spec, base_dir=base_dir, overrides=overrides)


def source_views(spec: ExperimentSpec, profiles: Mapping[str, ModelProfile]) -> dict[str, SourceView]:
    """``workload.source_views``, failing as a ``SimulationError``."""
    with _as_simulation_error():
        return workload.source_views(spec, profiles)


def make_policy(spec: ExperimentSpec, name: str, views: Mapping[str, SourceView]) -> Policy:
    """``workload.make_policy``, failing as a ``SimulationError``."""
    with _as_simulation_error():
        return workload.make_policy(spec, name, views)


def build_simulator(
    spec: ExperimentSpec,
    policy: str,
    *,
    seed: int | None = None,
    profiles: Mapping[str, ModelProfile] | None = None,
    options: SimOptions | None = None,
    base_dir: str | Path | None = None,
) -> Simulator:
    if profiles is None or set(profiles) != {s.name for s in spec.sources}:
        profiles = load_profiles(spec, base_dir=base_dir, overrides=profiles)
    from orchestrator.gpuprofiles import resolve_gpu_speeds

    try:
        spec, _ = resolve_gpu_speeds(spec, profiles, base_dir)
    except ValueError as err:
        raise SimulationError(str(err)) from None
    views = source_views(spec, profiles)
    nodes = [NodeConfig(n.name, node_speed(n)) for n in spec.nodes]
    links = {
        (lk.a, lk.b): LinkConfig(rate_bps=lk.rate_mbit * 1e6, delay_s=lk.delay_ms / 1000.0, loss=lk.loss,
                                 schedule=link_schedule(lk), burst_bytes=_burst(lk.rate_mbit, options),
                                 jitter_s=lk.jitter_ms / 1000.0)
        for lk in spec.resolved_links()
    }
    sources = [
        SimSource(view=views[s.name], samples=s.samples, interval_s=s.interval_s, arrival=s.arrival,
                     start_s=s.start_ms / 1000.0)
        for s in spec.sources
    ]
    failures = [FailureConfig(f.node, f.at_s, f.recover_after_s) for f in spec.failures]
    # ``options`` replaces the defaults whole (its beacon period included): runtime costs
    # (decision_cost_s, message_cost_s) and the scenario phase travel in it.
    opts = options or SimOptions(beacon_period_s=spec.beacon_period_ms / 1000.0)
    return Simulator(nodes, links, sources, make_policy(spec, policy, views), options=opts, failures=failures,
                     seed=spec.seed if seed is None else seed)


def _burst(rate_mbit: float, options: SimOptions | None) -> float:
    """The emulating shaper's burst in bytes (the stretched run's tbf bucket), or 0."""
    if options is None or options.shaper_stretch is None:
        return 0.0
    from orchestrator.netem.tc import burst_bytes

    return float(burst_bytes(rate_mbit / options.shaper_stretch))


def simulate(spec: ExperimentSpec, policy: str, **kwargs: Any) -> SimResult:
    return build_simulator(spec, policy, **kwargs).run()


def run_policies(
    spec: ExperimentSpec, policies: Sequence[str], **kwargs: Any
) -> tuple[dict[str, Any], dict[str, SimResult]]:
    """Simulate each policy; return the summary JSON and the raw results by policy."""
    priorities = {s.name: s.priority for s in spec.sources}
    results: dict[str, SimResult] = {}
    runs = []
    for name in policies:
        res = simulate(spec, name, **kwargs)
        results[name] = res
        runs.append(summarize_run(name, res.records, priorities))
    return {"runs": runs}, results
