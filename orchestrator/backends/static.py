"""The ``compose`` backend: agents at endpoints fixed in advance (a compose project's addresses),
driven by the coordinator container (``orchestrator/compose.py: run_from_config``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.backends.base import AgentEndpoint, BackendTraits, RunContext
from orchestrator.spec import ExperimentSpec, LinkParams

log = logging.getLogger("orchestrator.compose")


class StaticBackend(BackendTraits):
    """Endpoints fixed in advance (the compose file's addresses); nothing to bring up or down."""

    name = "compose"
    default_curve = False
    default_device_time = "profile"  # the containers share this host (``--cpus`` only under "quota")
    gpu_check = "none"  # the node image carries a CPU-only torch
    shapes_with_token_bucket = True  # the node containers shape their links with tbf
    # compose's SIGTERM ends the agents after the coordinator exits, so a node never exits first
    # (which would abort the project under --abort-on-container-exit).
    agents_outlive_run = True

    def __init__(self, endpoints: Mapping[str, Mapping[str, Any]],
                 agent_delayed_links: Sequence[Sequence[str]] = (), scenario_clock: str | None = None) -> None:
        self._endpoints = {n: AgentEndpoint(node=n, control=str(e["control"]), data=dict(e.get("data", {})))
                           for n, e in endpoints.items()}
        self.agent_delayed_links = {(str(a), str(b)) for a, b in agent_delayed_links}
        self.scenario_clock = scenario_clock  # the file the nodes' scenario followers wait for

    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        del ctx
        missing = {n.name for n in spec.nodes} - set(self._endpoints)
        if missing:
            raise ValueError(f"run.json has no endpoint for nodes {sorted(missing)}")
        if self.scenario_clock is not None:
            # The nodes' radio scenarios start now, once, for every policy: the moment the docker
            # backend starts its scenario driver (its agents are up; here every node is healthy).
            from orchestrator.compose_scenarios import start_clock

            t0 = start_clock(self.scenario_clock)
            log.info("compose: scenario clock started (t0 %.3f, %s)", t0, self.scenario_clock)
        return self._endpoints

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        log.warning("compose: links are shaped by the nodes (at start, then by their scenario followers); "
                    "%s-%s %s not applied", a, b, params)

    def link_stats(self) -> list[dict[str, object]]:
        return []

    def down(self) -> None:
        """The agents stay up: compose stops them (SIGTERM flushes traces) when the coordinator exits."""
