"""The ``docker`` backend: one container per spec node, one Docker network per spec link.

Per run (token ``t``): a control network ``pamdi-t-ctl`` that the orchestrator reaches the agents
on (like Colosseum's ``col0``), and per spec link ``a-b`` a network ``pamdi-t-a-b`` with its own
/24, joined by exactly those two containers. All networks are ``internal`` (no route out, no NAT):
traffic stays between the run's containers and this host. Each container runs the node image's
entry (``pamdi node --listen tcp://0.0.0.0:7000 ...``) with ``NET_ADMIN``, a CPU quota
(``cpu_quota`` / ``cpu_period``: the node's device profile, else ``speed x threads`` CPUs, with the
netns backend's short period, ``netem.cgroups.quota_us``)
and the run's trace folder mounted at ``/traces``. Links are shaped inside the containers by the
image's own shaper (``pamdi-node-entry shape``: tbf on both ends, netem for delay/loss when the
kernel has it), the same code a docker-compose node runs at start.

Everything carries the labels ``pamdi.project=pamdi``, ``pamdi.run=<run id>`` and
``pamdi.owner-pid``; ``down`` removes it (also after Ctrl-C: the runner calls it in ``finally``,
and an ``atexit`` hook catches the rest), and ``cleanup_docker``
(``orchestrator/netem/docker_cleanup.py``) removes what killed runs left.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.backends.base import (
    AGENT_IDLE_EXIT_S,
    READY,
    AgentEndpoint,
    BackendTraits,
    RunContext,
    agent_argv,
    agent_env,
    write_topology,
)
from orchestrator.backends.dockernet import (
    AGENT_PORT,
    DEFAULT_IMAGE,
    DEFAULT_SUBNET_POOL,
    KEYS_MOUNT,
    TRACE_MOUNT,
    LinkNet,
    free_subnets,
    link_shaping,
    used_subnets,
)
from orchestrator.backends.scenarios import drive_scenarios, link_scenarios
from orchestrator.netem.cgroups import quota_us
from orchestrator.netem.docker_cleanup import (
    OWNER_LABEL,
    OWNER_START_LABEL,
    PROJECT_LABEL,
    RUN_LABEL,
    cleanup_docker,
    remove_labelled,
)
from orchestrator.spec import ExperimentSpec, LinkParams

log = logging.getLogger(__name__)



class DockerBackend(BackendTraits):
    name = "docker"
    default_curve = True  # any process on this host reaches the bridge networks (--insecure: off)
    # Agents share this host: they hold results to the modelled device time (``--cpus`` per node
    # only under device_time "quota").
    default_device_time = "profile"
    gpu_check = "none"  # the node image carries a CPU-only torch (GPU containers: not built)
    shapes_with_token_bucket = True  # links have a tbf token bucket (the simulator models it for predictions)

    def __init__(self, *, image: str = DEFAULT_IMAGE, cpu_quota: bool = True, start_timeout_s: float = 120.0,
                 subnet_pool: str = DEFAULT_SUBNET_POOL, scenario_tick_s: float = 0.1) -> None:
        self.image = image
        self.cpu_quota = cpu_quota
        self.start_timeout_s = start_timeout_s
        self.subnet_pool = subnet_pool
        self.scenario_tick_s = scenario_tick_s
        self.token = uuid.uuid4().hex[:8]
        self.cli: Any = None
        self.spec: ExperimentSpec | None = None
        self.ctx: RunContext | None = None
        self.containers: dict[str, Any] = {}
        self.networks: list[Any] = []
        self.control: ipaddress.IPv4Network | None = None
        self.links: dict[tuple[str, str], LinkNet] = {}
        self.link_params: dict[tuple[str, str], LinkParams] = {}
        self.shaped: dict[str, list[dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._down_done = False

    # ------------------------------------------------------------------------------------ Backend
    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        from orchestrator.image.dockerutil import client, image_labels

        self.spec, self.ctx = spec, ctx
        self.agent_delayed_links: set[tuple[str, str]] = set()
        self.cli = client()
        if image_labels(self.cli, self.image) is None:
            raise RuntimeError(f"node image {self.image} not found: run `pamdi image build` (or pass image=...)")
        scenarios = link_scenarios(spec)  # every scenario checked before anything is built
        # What runs whose orchestrator died left behind goes first: nobody has to run `pamdi cleanup`.
        swept = cleanup_docker(cli=self.cli, spare_own=True)["removed"]
        if swept:
            log.warning("docker: removed %d leftovers of dead runs (%s)", len(swept), ", ".join(swept[:4]))
        atexit.register(self.down)
        try:
            self._create_networks(spec)
            for node in spec.nodes:
                self._create_container(node.name)
            for node in spec.nodes:
                self.containers[node.name].start()
            for node in spec.nodes:
                self._shape(node.name)
            for node in spec.nodes:
                self._wait_ready(node.name, since=0)
            self._write_topology()
            if scenarios:
                t = threading.Thread(target=self._drive_scenarios, args=(scenarios,), name="docker-scenarios",
                                     daemon=True)
                t.start()
                self._threads.append(t)
        except BaseException:
            self.down()
            raise
        return {n.name: self.endpoint(n.name) for n in spec.nodes}

    def endpoint(self, node: str) -> AgentEndpoint:
        assert self.spec is not None
        data = {k: f"tcp://{self._link(node, k).address(node)}:{AGENT_PORT}" for k in self.spec.neighbours()[node]}
        return AgentEndpoint(node=node, control=f"tcp://{self._control_ip(node)}:{AGENT_PORT}", data=data)

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        net = self._link(a, b)
        self.link_params[(net.a, net.b)] = params
        for node, peer in ((net.a, net.b), (net.b, net.a)):
            self._exec_shape(node, [link_shaping(net, peer, params)])

    def link_stats(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        now = time.time()
        for node, container in self.containers.items():
            code, out = container.exec_run(["pamdi-node-entry", "stats"])
            if code != 0:
                continue
            peer_of = {s["dev"]: s["peer"] for s in self.shaped.get(node, [])}
            for row in json.loads(out.decode() or "[]"):
                rows.append({"t": now, "node": node, "peer": peer_of.get(row["dev"]), **row})
        return rows

    def down(self) -> None:
        """Stop the agents (SIGTERM: they flush traces), remove containers and networks. Idempotent."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads = []
        if self.cli is None:
            return
        for node, container in list(self.containers.items()):
            with contextlib.suppress(Exception):
                container.stop(timeout=5)
            self._save_log(node, container)
            with contextlib.suppress(Exception):
                container.remove(force=True)
        self.containers = {}
        for net in self.networks:
            with contextlib.suppress(Exception):
                net.remove()
        self.networks = []
        # Whatever this run created and the loops above missed (e.g. created, then Ctrl-C).
        if self.ctx is not None:
            remove_labelled(self.cli, f"{RUN_LABEL}={self.ctx.run_id}")
        with contextlib.suppress(Exception):
            atexit.unregister(self.down)

    # ------------------------------------------------------------------------- SupportsFailures
    def kill(self, node: str) -> None:
        with contextlib.suppress(Exception):
            self.containers[node].kill()

    def restart(self, node: str) -> AgentEndpoint:
        container = self.containers[node]
        with contextlib.suppress(Exception):
            container.kill()
        since = int(time.time())
        container.start()  # same networks and addresses; a fresh netns, so shape again
        self._shape(node)
        self._wait_ready(node, since=since)
        return self.endpoint(node)

    # ---------------------------------------------------------------------------------- helpers
    def _cpu_limits(self, cpus: float | None) -> dict[str, int]:
        """The container's CFS quota and period under the ``quota`` model (none otherwise): the
        netns backend's (a 5 ms period, not Docker's 100 ms, which makes a quota a bursty slowdown)."""
        if not (self.cpu_quota and self.ctx.device_time == "quota" and cpus):
            return {}
        quota, period = quota_us(cpus)
        return {"cpu_quota": quota, "cpu_period": period}

    def _labels(self) -> dict[str, str]:
        assert self.ctx is not None
        from orchestrator.netem.names import process_start_time

        return {PROJECT_LABEL: "pamdi", RUN_LABEL: self.ctx.run_id, OWNER_LABEL: str(os.getpid()),
                OWNER_START_LABEL: str(process_start_time(os.getpid()))}

    def _link(self, a: str, b: str) -> LinkNet:
        return self.links[(a, b) if a < b else (b, a)]

    def _control_ip(self, node: str) -> str:
        assert self.control is not None and self.spec is not None
        index = [n.name for n in self.spec.nodes].index(node)
        return str(self.control.network_address + 10 + index)

    def _create_networks(self, spec: ExperimentSpec) -> None:
        from docker.types import IPAMConfig, IPAMPool

        links = spec.resolved_links()
        if len(spec.nodes) > 200:
            raise ValueError("the docker backend puts every node on one /24 control network: at most 200 nodes")
        subnets = free_subnets(1 + len(links), self.subnet_pool, used_subnets(self.cli))
        self.control = subnets[0]
        plan = [(f"pamdi-{self.token}-ctl", subnets[0], None)]
        for link, subnet in zip(links, subnets[1:], strict=True):
            net = LinkNet(link.a, link.b, f"pamdi-{self.token}-{link.a}-{link.b}", subnet)
            self.links[link.key] = net
            params = link
            if link.scenario is not None:
                import radio_scenarios

                p = radio_scenarios.get(link.scenario).at(0.0)
                k = self.ctx.time_scale if self.ctx is not None else 1.0
                params = link.model_copy(update={"rate_mbit": p.rate_mbit / k, "delay_ms": p.delay_ms * k,
                                                 "loss": p.loss})
            self.link_params[link.key] = LinkParams(rate_mbit=params.rate_mbit, delay_ms=params.delay_ms,
                                                    jitter_ms=params.jitter_ms, loss=params.loss)
            plan.append((net.name, subnet, link.key))
        for name, subnet, _ in plan:
            gateway = str(next(subnet.hosts()))
            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=gateway)])
            self.networks.append(self.cli.networks.create(name, driver="bridge", internal=True, ipam=ipam,
                                                          labels=self._labels(), check_duplicate=True))

    def _create_container(self, node: str) -> None:
        assert self.spec is not None and self.ctx is not None and self.control is not None
        from orchestrator.devices import node_speed
        from orchestrator.netem.devices import node_quota

        spec_node = self.spec.node(node)
        cpus, threads = node_quota(node_speed(spec_node), spec_node.threads, spec_node.device)
        trace_dir = Path(self.ctx.trace_dir or Path(self.ctx.run_dir) / "agents").resolve()
        trace_dir.mkdir(parents=True, exist_ok=True)
        volumes = {str(trace_dir): {"bind": TRACE_MOUNT, "mode": "rw"}}
        keys = None
        if self.ctx.keys_dir is not None:
            from orchestrator.keys import node_key_folder

            own = node_key_folder(self.ctx.keys_dir, node, Path(self.ctx.keys_dir) / "nodes" / node).resolve()
            volumes[str(own)] = {"bind": KEYS_MOUNT, "mode": "ro"}
            keys = KEYS_MOUNT
        # agent_argv gives `python -m pamdi_node ARGS`; the image's entry runs `pamdi node ARGS`.
        args = agent_argv(node, f"tcp://0.0.0.0:{AGENT_PORT}", threads=threads, keys_dir=keys,
                          trace_dir=TRACE_MOUNT, insecure=keys is None, idle_exit_s=AGENT_IDLE_EXIT_S)[3:]
        networking = self.cli.api.create_networking_config({
            f"pamdi-{self.token}-ctl": self.cli.api.create_endpoint_config(ipv4_address=self._control_ip(node)),
        })
        container_id = self.cli.api.create_container(
            self.image, command=args, name=f"pamdi-{self.token}-{node}", hostname=node,
            labels={**self._labels(), "pamdi.node": node},
            environment={**agent_env(threads), "PYTHONUNBUFFERED": "1"},
            networking_config=networking,
            host_config=self.cli.api.create_host_config(
                cap_add=["NET_ADMIN"],
                **self._cpu_limits(cpus),
                binds=volumes,
                init=True,  # signals reach the agent; zombies are reaped
            ),
        )["Id"]
        container = self.cli.containers.get(container_id)
        self.containers[node] = container
        for key, net in self.links.items():
            if node in key:
                self.cli.networks.get(net.name).connect(container, ipv4_address=net.address(node))

    def _shape(self, node: str) -> None:
        assert self.spec is not None
        links = []
        for peer in self.spec.neighbours()[node]:
            net = self._link(node, peer)
            links.append(link_shaping(net, peer, self.link_params[(net.a, net.b)]))
        self.shaped[node] = self._exec_shape(node, links)

    def _exec_shape(self, node: str, links: list[dict[str, Any]]) -> list[dict[str, Any]]:
        code, out = self.containers[node].exec_run(["pamdi-node-entry", "shape", json.dumps(links)])
        text = out.decode(errors="replace").strip()
        if code != 0:
            raise RuntimeError(f"shaping the links of {node} failed: {text[-500:]}")
        done: list[dict[str, Any]] = json.loads(text.splitlines()[-1])
        for d in done:
            em = d["emulated"]
            if em["rate"] and em["loss"] and not em["delay"]:
                # No netem in this kernel: the receiving agents apply the link's delay (and jitter).
                peer = str(d["peer"])
                self.agent_delayed_links.add((node, peer) if node < peer else (peer, node))
            elif not all(em.values()):
                log.warning("%s-%s: loss not emulated (no netem in this kernel), nor delay or jitter", node, d["peer"])
        return done

    def _wait_ready(self, node: str, since: int | None) -> None:
        container = self.containers[node]
        deadline = time.time() + self.start_timeout_s
        while time.time() < deadline:
            logs = container.logs(stdout=True, stderr=False, since=since or None).decode(errors="replace")
            if READY.search(logs):
                return
            container.reload()
            if container.status in ("exited", "dead"):
                tail = container.logs(stdout=True, stderr=True, tail=20).decode(errors="replace")
                raise RuntimeError(f"agent {node} exited before it was ready:\n{tail}")
            time.sleep(0.2)
        raise RuntimeError(f"agent {node} was not ready within {self.start_timeout_s:.0f}s")

    def _save_log(self, node: str, container: Any) -> None:
        if self.ctx is None:
            return
        with contextlib.suppress(Exception):
            logs = Path(self.ctx.run_dir) / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            (logs / f"{node}.log").write_bytes(container.logs(stdout=True, stderr=True))

    def _write_topology(self) -> None:
        assert self.ctx is not None and self.control is not None
        topo = {
            "backend": "docker", "image": self.image, "token": self.token, "control_subnet": str(self.control),
            "nodes": {n: {"container": c.name, "control": self._control_ip(n), "links": self.shaped.get(n, [])}
                      for n, c in self.containers.items()},
            "links": {f"{a}-{b}": {"network": net.name, "subnet": str(net.subnet), **self._stages(a, b)}
                      for (a, b), net in self.links.items()},
        }
        write_topology(self.ctx.run_dir, topo)

    def _stages(self, a: str, b: str) -> dict[str, object]:
        """What applies the link's delay and jitter (netem in the containers, the agents, or nothing)."""
        params = self.link_params[(a, b)]
        netem = any(d.get("peer") == b and d["emulated"].get("delay") for d in self.shaped.get(a, []))
        stage = "agent" if (a, b) in self.agent_delayed_links else "netem" if netem and params.delay_ms else "none"
        return {"delay_ms": params.delay_ms, "delay_stage": stage, "jitter_ms": params.jitter_ms,
                "jitter_stage": stage if params.jitter_ms > 0 else "none"}

    def _drive_scenarios(self, scenarios: Mapping[tuple[str, str], Any]) -> None:
        drive_scenarios(scenarios, self.set_link, self._stop, self.scenario_tick_s,
                        self.ctx.time_scale if self.ctx is not None else 1.0)
