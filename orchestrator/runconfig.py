"""What a run sends its agents: the run's options, the device-time model, each policy's parameters
and one agent configuration per node (``pamdi_node.agent.config.RunConfig`` as a dict)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.backends.base import AgentEndpoint, Backend
from orchestrator.goodput import goodput_bps
from orchestrator.spec import ExperimentSpec
from orchestrator.workload import policy_params
from pamdi_node import devicetime
from pamdi_node.policies.types import SourceView


@dataclass
class RunOptions:
    policies: Sequence[str] | None = None  # None = the spec's; ("all",) = the paper's five
    curve: bool | None = None  # None = the backend's default (``backend.default_curve``)
    # Keys already on the agents (a compose project's, rendered with it): used, not generated, and
    # left in place at the end. None: the runner makes the run's keys and removes them after.
    keys_dir: str | Path | None = None
    keep_outputs: bool = False  # ship every result tensor back (identity tests)
    # Device-time model (pamdi_node/devicetime.py); None = the spec's, else the backend's default.
    device_time: str | None = None
    # Time stretch k (profile device time); None = what the host headroom needs (``timescale``).
    time_stretch: float | None = None
    task_timeout_s: float = 60.0
    run_timeout_s: float | None = None  # per policy; None = from the spec's arrival schedule
    agent_timeout_s: float = 90.0  # for agents to come up / build their blocks
    beacon_period_s: float | None = None  # None = the spec's
    extra_config: Mapping[str, Any] = field(default_factory=dict)  # merged into every agent config



def resolve_device_time(asked: str | None, spec: ExperimentSpec, backend: Backend | None) -> str:
    """The run's device-time model: as asked, else the spec's, else the backend's default."""
    name = asked or spec.device_time or (backend.default_device_time if backend is not None else None) or "native"
    return devicetime.check(name)


def build_configs(
    spec: ExperimentSpec,
    policy: str,
    endpoints: Mapping[str, AgentEndpoint],
    views: Mapping[str, SourceView],
    *,
    run_id: str = "run",
    options: RunOptions | None = None,
    params: Mapping[str, Any] | None = None,
    agent_delayed: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
) -> dict[str, dict[str, Any]]:
    """One agent configuration per node (``pamdi_node.agent.config.RunConfig`` as a dict);
    ``agent_delayed``: links (sorted name pairs) whose delay the receiving agents apply."""
    from orchestrator.devices import node_speed

    opts = options or RunOptions()
    device_time = resolve_device_time(opts.device_time, spec, None)
    params = dict(params if params is not None else policy_params(spec, policy, views))
    graph = spec.neighbours()
    speeds = {n.name: node_speed(n) for n in spec.nodes}
    by_name = {s.name: s for s in spec.sources}
    sources = []
    for name, v in views.items():
        s = by_name[name]
        sources.append({
            "name": name, "node": v.node, "model": v.model, "priority": v.priority, "accuracy": v.accuracy,
            "samples": s.samples, "interval_s": s.interval_s, "arrival": s.arrival, "start_s": s.start_ms / 1000.0,
            "batch": s.batch, "data": s.data, "block_time_s": list(v.block_time_s),
            "block_out_bytes": list(v.block_out_bytes), "input_bytes": v.input_bytes,
            "result_bytes": v.result_bytes, "bounds": list(v.bounds),
        })
    links = [[u, v, goodput_bps(lk.rate_mbit), lk.delay_ms / 1000.0]
             for lk in spec.resolved_links() for u, v in ((lk.a, lk.b), (lk.b, lk.a))]
    beacon = opts.beacon_period_s if opts.beacon_period_s is not None else spec.beacon_period_ms / 1000.0
    configs: dict[str, dict[str, Any]] = {}
    for node in spec.nodes:
        n = node.name
        peers = {}
        for k in graph[n]:
            link = spec.link(n, k)
            assert link is not None
            ep = endpoints[k]
            peers[k] = {
                "address": ep.data.get(n, ep.control),
                # Views carry goodput (the policies never apply the factor themselves).
                "rate_bps": goodput_bps(link.rate_mbit),
                "delay_s": link.delay_ms / 1000.0,
                "jitter_s": link.jitter_ms / 1000.0,
                "loss": link.loss,
                "apply_delay": link.key in agent_delayed,
            }
        # Under "local" nobody else's model ever runs here: build only this node's own models.
        blocks = {v.model: (0, len(v.block_time_s)) for v in views.values() if policy != "local" or v.node == n}
        configs[n] = {
            "node": n, "run_id": run_id, "config_id": uuid.uuid4().hex, "seed": spec.seed, "policy": policy,
            "policy_params": params,
            "speed": speeds[n], "device_time": device_time, "threads": node.threads,
            "beacon_period_s": beacon, "task_timeout_s": opts.task_timeout_s, "peers": peers,
            "graph": {k: list(v) for k, v in graph.items()}, "speeds": speeds, "sources": sources,
            "links": links,
            "blocks": {m: list(r) for m, r in blocks.items()}, "keep_outputs": opts.keep_outputs,
            **dict(opts.extra_config),
        }
    return configs


def stretch_options(opts: RunOptions, k: float) -> RunOptions:
    """The options of a run stretched ``k`` times: its timeouts and the agents' protocol timers too."""
    import dataclasses

    extra = {"ack_timeout_s": 3.0 * k, "rtc_timeout_s": 0.25 * k, "grant_window_s": 0.002 * k}
    return dataclasses.replace(
        opts, task_timeout_s=opts.task_timeout_s * k,
        run_timeout_s=None if opts.run_timeout_s is None else opts.run_timeout_s * k,
        extra_config={**extra, **dict(opts.extra_config)})


def expected_duration_s(spec: ExperimentSpec) -> float:
    """When the last task is submitted (seconds after start), plus its mean gap."""
    return max(s.start_ms / 1000.0 + s.samples * s.interval_s for s in spec.sources)


def peers_heard(stats: Mapping[str, Any]) -> bool:
    """Whether an agent's stats say it has heard a beacon from every neighbour (``peers``)."""
    peers = stats.get("peers")
    return isinstance(peers, dict) and all(isinstance(p, dict) and p.get("alive") for p in peers.values())


def wait_for_peers(clients: Mapping[str, Any], timeout_s: float, poll_s: float = 0.05) -> list[str]:
    """Wait until every configured agent has heard each of its neighbours; returns the nodes that
    still had not at ``timeout_s``. A source started before then sees no live neighbour and keeps
    its first tasks: a start-up race that a loaded host (late first beacons) loses."""
    import time

    from pamdi_node.agent.client import AgentError

    deadline = time.time() + timeout_s
    waiting = set(clients)
    while True:
        for node in sorted(waiting):
            try:
                if peers_heard(clients[node].stats()):
                    waiting.discard(node)
            except AgentError:
                pass  # not answering yet: asked again, until the deadline
        if not waiting or time.time() >= deadline:
            return sorted(waiting)
        time.sleep(poll_s)
