"""The ``colosseum-batch`` backend: agents already running on a batch job's SRNs (their own start.sh
launched them), found on the data plane by the batch leader (``orchestrator/colosseum/batch_lead.py``)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.backends.base import AgentEndpoint, BackendTraits, RunContext
from orchestrator.colosseum.batch_conf import DEFAULT_DISCOVERY_TIMEOUT_S, BatchConf, StateFile
from orchestrator.colosseum.batch_discovery import candidate_addresses, discover, local_addresses
from orchestrator.spec import ExperimentSpec, LinkParams

log = logging.getLogger("pamdi.batch_lead")


class BatchBackend(BackendTraits):
    """Agents already running on the batch's SRNs (their own start.sh launched them)."""

    name = "colosseum-batch"
    default_curve = False  # agents run --insecure: nobody hands out keys in batch mode
    default_device_time = "native"  # real SRNs: real speed, predictions from a profile measured there
    gpu_check = "remote"  # the agent on the SRN checks its GPU itself

    def __init__(self, conf: BatchConf, *, discovery_timeout_s: float = DEFAULT_DISCOVERY_TIMEOUT_S,
                 state: StateFile | None = None) -> None:
        self.conf = conf
        self.discovery_timeout_s = discovery_timeout_s
        self.state = state or StateFile()
        self.addresses: dict[str, str] = {}
        self.candidates: list[str] = []
        self.discovery_s: float | None = None
        self.counters: dict[str, list[dict[str, object]]] = {}
        self._down = False

    def url(self, node: str) -> str:
        return f"tcp://{self.addresses[node]}:{self.conf.agent_port}"

    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        del ctx
        nodes = [n.name for n in spec.nodes]
        self.candidates = candidate_addresses(self.conf, local_addresses())

        def progress(found: dict[str, str]) -> None:
            self.addresses = dict(found)
            waiting = [n for n in nodes if n not in found]
            self.state.set("ACTIVE", f"leader: discovering agents on the radio network: {len(found)}/{len(nodes)} "
                           f"answered" + (f", waiting for {', '.join(waiting)}" if waiting else ""))

        t0 = time.time()
        self.addresses = discover(nodes, self.candidates, self.conf.agent_port, self.discovery_timeout_s, progress)
        self.discovery_s = time.time() - t0
        self.counters["up"] = self.link_stats()
        log.info("agents found in %.1f s: %s", self.discovery_s, self.addresses)
        graph = spec.neighbours()
        # Control and data on the radio address: the agents bind there only (col0 carries nothing).
        return {n: AgentEndpoint(node=n, control=self.url(n), data={k: self.url(n) for k in graph[n]})
                for n in nodes}

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        log.warning("colosseum batch: links are the RF scenario's; set_link %s-%s %s is not applied", a, b, params)

    def link_stats(self) -> list[dict[str, object]]:
        """rx/tx byte counters of this container's interfaces (the other SRNs are out of reach)."""
        out: list[dict[str, object]] = []
        for ifname in sorted(local_addresses()):
            stats = Path("/sys/class/net") / ifname / "statistics"
            with contextlib.suppress(OSError, ValueError):
                out.append({"node": self.conf.node, "interface": ifname, "t": time.time(),
                            "rx_bytes": int((stats / "rx_bytes").read_text()),
                            "tx_bytes": int((stats / "tx_bytes").read_text())})
        return out

    def down(self) -> None:
        """Stop every discovered agent still running (the runner stops them first; this is the safety net)."""
        if self._down:
            return
        self._down = True
        with contextlib.suppress(Exception):
            self.counters["down"] = self.link_stats()
        from pamdi_node.agent.client import AgentClient, AgentError

        def stop(node: str) -> None:
            try:
                with AgentClient(self.url(node), server=node, timeout_s=1.0) as c:
                    c.stop(timeout_s=1.0)
                log.info("stopped agent %s", node)
            except AgentError:
                pass  # already stopped (by the runner) or gone

        if self.addresses:  # in parallel: after the runner's stop, every call waits out its timeout
            with ThreadPoolExecutor(max_workers=len(self.addresses)) as pool:
                list(pool.map(stop, list(self.addresses)))
