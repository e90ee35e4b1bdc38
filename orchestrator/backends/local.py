"""The ``local`` backend: one agent process per spec node on loopback (127.0.0.x), no root needed.

Node i listens on ``tcp://127.0.0.(2+i):PORT`` (the kernel picks PORT; the agent reports it on its
ready line). Link rates and loss are not shaped: every node reaches every other over loopback, while
the agents' policies still see the spec's link rates. Link delays are real: the receiving agent holds
each message for its link's one-way delay (``PeerConfig.apply_delay``, as on hosts without netem).
Use the netns or docker backends for shaped links.
Agents run in their own session (so a Ctrl-C in the terminal reaches only the orchestrator, which
stops them cleanly); ``down`` sends SIGTERM (agents flush their traces), then SIGKILL after a grace
period. Logs go to ``<run_dir>/logs/<node>.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from orchestrator.backends.base import (
    AgentEndpoint,
    BackendTraits,
    RunContext,
    agent_argv,
    agent_env,
    wait_ready,
)
from orchestrator.spec import ExperimentSpec, LinkParams

log = logging.getLogger(__name__)



class LocalBackend(BackendTraits):
    name = "local"
    default_curve = True  # loopback too: any local process could otherwise steer the agents (--insecure: off)
    default_device_time = "profile"  # agents share this host: hold results to the modelled device time
    gpu_check = "host"  # agents run here: a GPU node needs this machine's torch to see a GPU

    def __init__(self, *, python: str | None = None, start_timeout_s: float = 60.0, device: str = "cpu",
                 first_host: int = 2) -> None:
        self.python = python or sys.executable
        self.start_timeout_s = start_timeout_s
        self.device = device
        self.first_host = first_host
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.listen: dict[str, str] = {}
        self.ctx: RunContext | None = None
        self.spec: ExperimentSpec | None = None
        self._logs: dict[str, object] = {}
        self.agent_delayed_links: set[tuple[str, str]] = set()  # links whose delay the agents apply

    # ------------------------------------------------------------------------------------ Backend
    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        if len(spec.nodes) > 250:
            raise ValueError("the local backend gives each node its own 127.0.0.x address: at most 250 nodes")
        self.spec, self.ctx = spec, ctx
        self.agent_delayed_links = {link.key for link in spec.resolved_links() if link.delay_ms > 0}
        try:
            for i, node in enumerate(spec.nodes):
                self._start(node.name, f"tcp://127.0.0.{self.first_host + i}:*")
            for node in spec.nodes:
                self._wait_ready(node.name)
        except BaseException:
            self.down()
            raise
        return {n: self.endpoint(n) for n in self.listen}

    def endpoint(self, node: str) -> AgentEndpoint:
        url = self.listen[node]
        assert self.spec is not None
        return AgentEndpoint(node=node, control=url, data={k: url for k in self.spec.neighbours()[node]})

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        log.warning("local backend: links are not shaped (%s-%s %s ignored); use netns or docker", a, b, params)

    def link_stats(self) -> list[dict[str, object]]:
        return []

    def down(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 5.0
        for node, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log.warning("agent %s ignored SIGTERM; killing it", node)
                proc.kill()
                proc.wait()
        self.procs = {}
        for f in self._logs.values():
            f.close()  # type: ignore[attr-defined]
        self._logs = {}

    # ------------------------------------------------------------------------- SupportsFailures
    def kill(self, node: str) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, node: str) -> AgentEndpoint:
        self.kill(node)
        self._start(node, self.listen[node])  # same address and port: peers reconnect by themselves
        self._wait_ready(node)
        return self.endpoint(node)

    def pid(self, node: str) -> int:
        return self.procs[node].pid

    # ---------------------------------------------------------------------------------- helpers
    def _device(self, node: str) -> str:
        """The node's ``device_type`` from the spec; the backend's ``device`` for CPU nodes (e.g. an
        all-GPU loopback run started with ``LocalBackend(device="cuda")``)."""
        assert self.spec is not None
        wanted = self.spec.node(node).device_type
        return wanted if wanted != "cpu" else self.device

    def _start(self, node: str, listen: str) -> None:
        assert self.ctx is not None and self.spec is not None
        logs = Path(self.ctx.run_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        argv = agent_argv(node, listen, python=self.python, threads=self.spec.node(node).threads,
                          device=self._device(node),
                          keys_dir=self.ctx.keys_dir, trace_dir=self.ctx.trace_dir)
        argv += ["--parent-pid", str(os.getpid())]  # the agent exits if this process dies
        if node not in self._logs:
            self._logs[node] = (logs / f"{node}.log").open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **agent_env(self.spec.node(node).threads))
        self.procs[node] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._logs[node],  # type: ignore[arg-type]
                                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.listen[node] = listen

    def _wait_ready(self, node: str) -> None:
        assert self.ctx is not None
        self.listen[node] = wait_ready(self.procs[node], node, self.start_timeout_s,
                                       Path(self.ctx.run_dir) / "logs" / f"{node}.log")
