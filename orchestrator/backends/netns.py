"""The ``netns`` backend: one network namespace per spec node, tc-shaped veth links, CPU quotas.

Per node: a namespace ``pamdi-<token>-n-<node>`` with a control path from the root namespace
(like Colosseum's ``col0``) and one veth per spec link (its own 10.x/24); the agent runs inside
the namespace (``pamdi node --listen tcp://0.0.0.0:7000``) under a cgroup CPU quota that makes
slow devices slow for real (``docker --cpus`` style): ``device:`` nodes get their profile's quota
and threads (orchestrator/devices.py, orchestrator/netem/devices.py), others ``speed x threads`` CPUs.

Links: tbf on both ends at the spec's rate; delay and loss with netem when the kernel has it, else
with the user-space forwarder. A link that names a radio ``scenario`` is driven over time from the
catalogue (rate, delay and loss changed in place). Link counters are sampled every
``stats_period_s`` into ``<run_dir>/links/tc_stats.jsonl``; with ``pcap=True`` every link end is
captured (headers only, ``snaplen`` bytes) into ``<run_dir>/pcap/<node>-<link>.pcap``.

The agents get ``--insecure`` unless the run has Curve keys: their sockets are reachable only from
the run's namespaces and the root-namespace control ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from orchestrator.backends.base import (
    AgentEndpoint,
    BackendTraits,
    RunContext,
    agent_argv,
    agent_env,
    wait_ready,
    write_topology,
)
from orchestrator.backends.scenarios import drive_scenarios, link_scenarios
from orchestrator.spec import ExperimentSpec, LinkParams

log = logging.getLogger(__name__)

AGENT_PORT = 7000


def sweep_dead_runs() -> list[str]:
    """Remove what runs whose owner died (a SIGKILLed orchestrator) left behind, before building:
    nobody has to remember ``pamdi cleanup``. Live runs beside this one are left alone."""
    from orchestrator.netem.cleanup import cleanup

    removed = cleanup()["removed"]
    if removed:
        log.warning("netns: removed %d leftovers of dead runs (%s%s)", len(removed), ", ".join(removed[:4]),
                    ", ..." if len(removed) > 4 else "")
    return removed


class NetnsBackend(BackendTraits):
    name = "netns"
    default_curve = True  # root processes on this host reach every namespace (--insecure: off)
    # Agents share this host: they hold results to the modelled device time (a CPU quota per node
    # only under device_time "quota").
    default_device_time = "profile"
    gpu_check = "host"  # agents run here, in namespaces: a GPU node needs this machine's GPU
    shapes_with_token_bucket = True  # links have a tbf token bucket (the simulator models it for predictions)
    calibrates_quota = True  # orchestrator/netem/calibrate.py runs the blocks inside the nodes' cgroups

    def __init__(self, *, python: str | None = None, start_timeout_s: float = 90.0, cpu_quota: bool = True,
                 stats_period_s: float = 0.5, pcap: bool = False, snaplen: int = 128,
                 use_netem: bool | None = None, scenario_tick_s: float = 0.05) -> None:
        self.python = python or sys.executable
        self.start_timeout_s = start_timeout_s
        self.cpu_quota = cpu_quota
        self.stats_period_s = stats_period_s
        self.pcap = pcap
        self.snaplen = snaplen
        self.use_netem = use_netem
        self.scenario_tick_s = scenario_tick_s
        self.net = None
        self.spec: ExperimentSpec | None = None
        self.ctx: RunContext | None = None
        self.agents: dict[str, subprocess.Popen] = {}
        self.captures: list[subprocess.Popen] = []
        self._logs: dict[str, IO[bytes]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stats_file: IO[str] | None = None
        self._t0 = 0.0

    # ------------------------------------------------------------------------------------ Backend
    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        from orchestrator.netem.devices import node_quota
        from orchestrator.netem.network import EmulatedNetwork

        self.spec, self.ctx = spec, ctx
        self.agent_delayed_links: set[tuple[str, str]] = set()
        scenarios = link_scenarios(spec)  # every scenario checked before anything is built
        sweep_dead_runs()
        self.net = EmulatedNetwork(f"run {ctx.run_id}", use_netem=self.use_netem, seed=ctx.seed)
        try:
            for node in spec.nodes:
                cpus = None
                if self.cpu_quota and ctx.device_time == "quota":
                    cpus, _ = node_quota(_speed(node), node.threads, node.device)
                self.net.add_node(node.name, cpus=cpus)
            for link in spec.resolved_links():
                sc = scenarios.get(link.key)
                if sc is not None:
                    p0 = sc.at(0)
                    stage = any(p.delay_ms > 0 or p.loss > 0 for p in sc.points)
                    k = ctx.time_scale
                    self.net.add_link(link.a, link.b, p0.rate_mbit / k, p0.delay_ms * k, p0.loss, delay_line=stage)
                elif link.delay_ms > 0 and link.loss == 0 and not self.net.use_netem:
                    # No netem here: a delay-only link is shaped for rate by tc and its delay (and
                    # jitter) is applied by the receiving agents (a user-space forwarder per link
                    # would take a large share of a small host's CPU from the agents it emulates).
                    self.net.add_link(link.a, link.b, link.rate_mbit)
                    self.agent_delayed_links.add(link.key)
                else:  # (jitter with loss and no netem is refused here: the forwarder cannot jitter)
                    self.net.add_link(link.a, link.b, link.rate_mbit, link.delay_ms, link.loss,
                                      jitter_ms=link.jitter_ms)
            run_dir = Path(ctx.run_dir)
            (run_dir / "logs").mkdir(parents=True, exist_ok=True)
            (run_dir / "links").mkdir(parents=True, exist_ok=True)
            self._write_topology(run_dir)
            if self.pcap:
                self._start_captures(run_dir / "pcap")
            for node in spec.nodes:
                self._start_agent(node.name)
            for node in spec.nodes:
                self._wait_ready(node.name)
            self._t0 = time.time()
            self._stats_file = (run_dir / "links" / "tc_stats.jsonl").open("a")
            self._spawn_thread(self._sample_stats, "netns-stats")
            if scenarios:
                self._spawn_thread(lambda: self._drive_scenarios(scenarios), "netns-scenarios")
        except BaseException:
            self.down()
            raise
        return {n.name: self.endpoint(n.name) for n in spec.nodes}

    def endpoint(self, node: str) -> AgentEndpoint:
        assert self.net is not None and self.spec is not None
        handle = self.net.nodes[node]
        data = {}
        for peer in self.spec.neighbours()[node]:
            link = self.net.link(node, peer)
            data[peer] = f"tcp://{link.addr_of(node)}:{AGENT_PORT}"
        return AgentEndpoint(node=node, control=f"tcp://{handle.control_addr}:{AGENT_PORT}", data=data)

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        assert self.net is not None
        self.net.set_link(a, b, params.rate_mbit, params.delay_ms, params.loss, params.jitter_ms)

    def link_stats(self) -> list[dict[str, object]]:
        if self.net is None:
            return []
        return self.net.link_stats()

    def down(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        if self._stats_file is not None and self.net is not None:
            with contextlib.suppress(Exception):
                self._write_stats_sample()
        if self._stats_file is not None:
            self._stats_file.close()
            self._stats_file = None
        if self.net is not None and self.ctx is not None:
            with contextlib.suppress(Exception):
                self._write_cpu_stat(Path(self.ctx.run_dir))
        if self.net is not None:
            self.net.close()  # SIGTERM to agents (they flush traces), then everything else
        self.agents = {}
        self.captures = []
        for f in self._logs.values():
            f.close()
        self._logs = {}

    def _write_cpu_stat(self, run_dir: Path) -> None:
        """Each node's cgroup CPU counters over the whole run (throttling under a quota)."""
        from orchestrator.netem import cgroups

        assert self.net is not None
        stats = {n: {"cpus": h.cpus, **cgroups.cpu_stat(h.cgroup)} for n, h in self.net.nodes.items()
                 if h.cgroup is not None}
        if stats:
            (run_dir / "cpu_stat.json").write_text(json.dumps(stats, indent=2) + "\n")

    # ------------------------------------------------------------------------- SupportsFailures
    def kill(self, node: str) -> None:
        proc = self.agents.get(node)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, node: str) -> AgentEndpoint:
        self.kill(node)
        self._start_agent(node)
        self._wait_ready(node)
        return self.endpoint(node)

    # ---------------------------------------------------------------------------------- helpers
    def _spawn_thread(self, fn, name: str) -> None:  # type: ignore[no-untyped-def]
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _start_agent(self, node: str) -> None:
        assert self.net is not None and self.ctx is not None and self.spec is not None
        spec_node = self.spec.node(node)
        from orchestrator.netem.devices import node_quota

        _, threads = node_quota(_speed(spec_node), spec_node.threads, spec_node.device)
        argv = agent_argv(node, f"tcp://0.0.0.0:{AGENT_PORT}", python=self.python, threads=threads,
                          device=spec_node.device_type, keys_dir=self.ctx.keys_dir, trace_dir=self.ctx.trace_dir,
                          insecure=self.ctx.keys_dir is None)
        argv += ["--parent-pid", str(os.getpid())]  # nsexec execs the agent: it exits if this process dies
        if node not in self._logs:
            self._logs[node] = (Path(self.ctx.run_dir) / "logs" / f"{node}.log").open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **agent_env(threads))
        self.agents[node] = self.net.spawn(node, argv, stdout=subprocess.PIPE, stderr=self._logs[node], env=env)

    def _wait_ready(self, node: str) -> None:
        assert self.ctx is not None
        wait_ready(self.agents[node], node, self.start_timeout_s, Path(self.ctx.run_dir) / "logs" / f"{node}.log")

    def _agent_delayed(self, lk: Any) -> bool:
        return ((lk.a, lk.b) if lk.a < lk.b else (lk.b, lk.a)) in self.agent_delayed_links

    def _delay_ms(self, lk: Any, field: str = "delay_ms") -> float:
        """The link's delay (or jitter) in effect: the spec's where the agents apply it, else tc's."""
        if self._agent_delayed(lk) and self.spec is not None:
            link = self.spec.link(lk.a, lk.b)
            return float(getattr(link, field)) if link is not None else 0.0
        return float(getattr(lk.state, field))

    def _stage(self, lk: Any) -> str:
        """What applies the link's delay (and jitter): netem, the forwarder, the agents or nothing."""
        return "netem" if lk.netem else "forwarder" if lk.forwarder else "agent" if self._agent_delayed(lk) else "none"

    def _write_topology(self, run_dir: Path) -> None:
        assert self.net is not None
        topo = {
            "token": self.net.token,
            "delay_stage": "netem" if self.net.use_netem else "forwarder",
            "cgroup": None if self.net.cg is None else f"v{self.net.cg.version}",
            "nodes": {n: {"netns": h.netns, "control": h.control_addr, "cpus": h.cpus}
                      for n, h in self.net.nodes.items()},
            "links": [{"a": lk.a, "b": lk.b, "if": lk.if_a, "addr_a": lk.addr_a, "addr_b": lk.addr_b,
                       "rate_mbit": lk.state.rate_mbit, "delay_ms": self._delay_ms(lk), "loss": lk.state.loss,
                       "stage": self._stage(lk), "jitter_ms": self._delay_ms(lk, "jitter_ms"),
                       "jitter_stage": self._stage(lk) if self._delay_ms(lk, "jitter_ms") > 0 else "none"}
                      for lk in self.net.links.values()],
        }
        write_topology(run_dir, topo)

    def _write_stats_sample(self) -> None:
        assert self.net is not None and self._stats_file is not None
        t = time.time()
        for row in self.net.link_stats():
            self._stats_file.write(json.dumps({"t": t, "t_rel": t - self._t0, **row}) + "\n")
        self._stats_file.flush()

    def _sample_stats(self) -> None:
        while not self._stop.wait(self.stats_period_s):
            try:
                self._write_stats_sample()
            except Exception as err:  # a sample lost is not worth stopping the run
                log.debug("link stats sample failed: %s", err)

    def _drive_scenarios(self, scenarios: dict) -> None:  # type: ignore[type-arg]
        assert self.net is not None
        net = self.net

        def set_link(a: str, b: str, p: LinkParams) -> None:
            net.set_link(a, b, p.rate_mbit, p.delay_ms, p.loss)

        start = {key: sc.at(0) for key, sc in scenarios.items()}  # shaped so when the links were built
        drive_scenarios(scenarios, set_link, self._stop, self.scenario_tick_s,
                        self.ctx.time_scale if self.ctx is not None else 1.0,
                        applied={key: LinkParams(rate_mbit=p.rate_mbit, delay_ms=p.delay_ms, loss=p.loss)
                                 for key, p in start.items()})

    def _start_captures(self, folder: Path) -> None:
        assert self.net is not None
        folder.mkdir(parents=True, exist_ok=True)
        for lk in self.net.links.values():
            for node in (lk.a, lk.b):
                peer = lk.b if node == lk.a else lk.a
                out = folder / f"{node}-to-{peer}.pcap"
                argv = [self.python, "-m", "orchestrator.netem.capture", "--iface", lk.if_a, "--out", str(out),
                        "--snaplen", str(self.snaplen)]
                self.captures.append(self.net.spawn(node, argv, stderr=subprocess.DEVNULL))


def _speed(node) -> float:  # type: ignore[no-untyped-def]
    from orchestrator.devices import node_speed

    return node_speed(node)
