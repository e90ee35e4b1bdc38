"""The ``colosseum`` backend: one agent per spec node on the reservation's SRNs, over SSH.

Spec node i runs on the i-th SRN of the config. ``up``:

1. finds each SRN's data-plane address (the radio stack's interface / subnet, never ``col0``) and
   its control address (the ``control_interface``, ``col0``);
2. creates ``<srn_work_dir>/<run_id>/`` there and pushes the node's key folder (all public keys,
   only its own secret: ``orchestrator.keys.node_key_folder``);
3. starts the agent (``<agent_command> --listen tcp://0.0.0.0:PORT ...``, detached with
   setsid/nohup, pid in ``agent.pid``, stdout+stderr in ``agent.log``) and, when ``pcap`` is on,
   ``tcpdump -U`` on the radio and on the control interface (skipped with a warning where it fails);
4. waits for the agent's ready line, then opens the control path to it (below).

Two planes, two networks:

- **Data plane = radio.** The run config gives every agent only its peers' *radio* addresses, so
  activations only ever cross the emulated RF channel.
- **Control plane = col0.** ``col0`` is the SRNs' wired control network; the experimenter's machine
  cannot reach it (it only reaches the SSH gateway, which reaches the SRNs' management addresses).
  So the orchestrator keeps ONE SSH connection to a *leader* SRN (the first spec node's) through
  the gateway and opens, on that connection, asyncssh direct-tcpip forwards
  ``127.0.0.1:<free port> -> <SRN's col0 address>:PORT`` for every agent (the leader's own agent
  through its own col0 address). A control message thus travels experimenter -> gateway -> leader
  as SSH over the management path, then leader -> SRN over ``col0``; none rides the radio.

The agent binds the wildcard address because it has to answer on both networks with one
``--listen``; CurveZMQ (on by default here: the run's key folder) keeps anyone without the run's
keys out on either. ``set_link`` cannot shape anything on Colosseum — the RF scenario is the
channel — so it logs and does nothing. ``link_stats`` samples rx/tx counters of the data and
control interfaces. ``down`` stops the agents (SIGTERM, then SIGKILL), harvests every SRN's run
folder into ``<run_dir>/srn-NNN/`` and closes the connections; it is idempotent and runs after
errors too.

The backend API is synchronous (the runner's), so asyncssh runs on a private event loop thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
import tempfile
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from orchestrator.backends.base import AGENT_IDLE_EXIT_S, AgentEndpoint, BackendTraits, RunContext
from orchestrator.colosseum.admin import find_data_address, parse_ip_addr
from orchestrator.colosseum.config import IFNAME_PATTERN, ColosseumConfig
from orchestrator.colosseum.transport import ColosseumError, Session, SrnError, q
from orchestrator.spec import ExperimentSpec, LinkParams
from orchestrator.sshlink import LoopThread

log = logging.getLogger(__name__)
T = TypeVar("T")


class ColosseumBackend(BackendTraits):
    name = "colosseum"
    default_curve = True  # agents listen on non-loopback addresses: CurveZMQ on
    default_device_time = "native"  # real SRNs: real speed, predictions from a profile measured there
    gpu_check = "remote"  # the agent on the SRN checks its GPU itself and says so in one line

    def __init__(self, cfg: ColosseumConfig, srn_password: str, *, ready_timeout_s: float = 120.0) -> None:
        self.cfg = cfg
        self.ready_timeout_s = ready_timeout_s
        self.loop = LoopThread("colosseum-ssh")
        self.session = Session(cfg, srn_password)
        self.node_srn: dict[str, int] = {}
        self.radio: dict[str, tuple[str, str]] = {}  # node -> (interface, address)
        self.control_addr: dict[str, str] = {}  # node -> its col0 address
        self.leader: str | None = None  # the node whose SRN relays all control traffic onto col0
        self.workdir: dict[str, str] = {}
        self.listeners: dict[str, asyncssh.SSHListener] = {}
        self.local_port: dict[str, int] = {}
        self.spec: ExperimentSpec | None = None
        self.ctx: RunContext | None = None
        self.counters: dict[str, list[dict[str, object]]] = {"up": [], "down": []}
        self._down = False

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.loop.call(coro, timeout)

    # ------------------------------------------------------------------------------------ Backend
    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        srns = self.cfg.require_srns()
        if len(srns) < len(spec.nodes):
            raise ColosseumError(
                f"the spec has {len(spec.nodes)} nodes but the config lists {len(srns)} SRNs ({list(srns)})"
            )
        self.spec, self.ctx = spec, ctx
        self.node_srn = {n.name: srns[i] for i, n in enumerate(spec.nodes)}
        self.leader = spec.nodes[0].name
        try:
            self.call(self._up(spec, ctx))
        except BaseException:
            self.down()
            raise
        return {n: self.endpoint(n) for n in self.node_srn}

    def endpoint(self, node: str) -> AgentEndpoint:
        assert self.spec is not None
        url = f"tcp://{self.radio[node][1]}:{self.cfg.agent_port}"
        return AgentEndpoint(node=node, control=f"tcp://127.0.0.1:{self.local_port[node]}",
                             data={k: url for k in self.spec.neighbours()[node]})

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        log.warning("colosseum: links are the RF scenario's (scenario %s); set_link %s-%s %s is not applied",
                    self.cfg.scenario, a, b, params)

    def link_stats(self) -> list[dict[str, object]]:
        return self.call(self._counters())

    def down(self) -> None:
        if self._down:
            return
        self._down = True
        self.loop.shut_down(self._down_all if self.node_srn else None, self.session.close, "colosseum")

    # ------------------------------------------------------------------------- SupportsFailures
    def kill(self, node: str) -> None:
        self.call(self._stop_agent(node, signal="KILL"))

    def restart(self, node: str) -> AgentEndpoint:
        self.call(self._start_agent(node))
        return self.endpoint(node)

    # ---------------------------------------------------------------------------------- helpers
    def _device(self, node: str) -> str:
        """The node's ``device_type`` from the spec; the config's ``agent_device`` for CPU nodes."""
        assert self.spec is not None
        wanted = self.spec.node(node).device_type
        return wanted if wanted != "cpu" else self.cfg.agent_device

    def _agent_cmd(self, node: str) -> str:
        assert self.spec is not None
        w = self.workdir[node]
        # Wildcard: the agent answers its peers on the radio address and the orchestrator on col0.
        argv = [*shlex.split(self.cfg.agent_command), "--listen", f"tcp://0.0.0.0:{self.cfg.agent_port}",
                "--name", node, "--device", self._device(node), "--threads", str(self.spec.node(node).threads),
                "--trace-dir", f"{w}/traces", "--idle-exit", f"{AGENT_IDLE_EXIT_S:g}"]
        if self.ctx is not None and self.ctx.keys_dir is not None:
            argv += ["--keys", f"{w}/keys"]
        else:
            argv.append("--insecure")
        return " ".join(q(a) for a in argv)

    async def _up(self, spec: ExperimentSpec, ctx: RunContext) -> None:
        async def prepare(node: str) -> None:
            srn = self.node_srn[node]
            host = self.cfg.srn_host(srn)
            res = await self.session.run(srn, "ip -o -4 addr show", check=True)
            addrs = parse_ip_addr(res.stdout)
            found = find_data_address(self.cfg, addrs)
            if found is None:
                want = self.cfg.data_plane.interface or self.cfg.data_plane.subnet
                raise SrnError(srn, host, "radio", f"no data-plane address ({want}) for node {node}: is the radio up?")
            if not re.match(IFNAME_PATTERN, found[0]):  # it goes into remote shells (counters, tcpdump)
                raise SrnError(srn, host, "radio", f"data-plane interface name {found[0][:40]!r} is not a plain "
                                                   "interface name")
            self.radio[node] = found
            ctrl = addrs.get(self.cfg.control_interface)
            if not ctrl:
                raise SrnError(srn, host, "control", f"no {self.cfg.control_interface} address for node {node}: "
                                                     "the control plane reaches the agents over it")
            self.control_addr[node] = ctrl[0].split("/")[0]
            base = self.cfg.work_dir(srn)
            # Agents and captures of earlier runs that nobody stopped (a killed orchestrator) go first,
            # with any keys they left; a pid is killed only if it still runs pamdi or tcpdump.
            await self.session.run(srn, (
                f"for f in {q(base)}/*/agent.pid {q(base)}/*/tcpdump-*.pid; do [ -f \"$f\" ] || continue; "
                "p=$(cat \"$f\"); if grep -qa -e pamdi -e tcpdump /proc/$p/cmdline 2>/dev/null; then "
                "kill -KILL -- -$p 2>/dev/null; kill -KILL $p 2>/dev/null; fi; rm -f \"$f\"; done; "
                f"rm -rf {q(base)}/*/keys; true"))
            w = f"{base}/{ctx.run_id}"
            self.workdir[node] = w
            await self.session.run(srn, f"mkdir -p {q(w)}/traces {q(w)}/pcap && chmod 700 {q(w)}", check=True)
            if ctx.keys_dir is not None:
                await self._push_keys(node, Path(ctx.keys_dir))
            await self._start_agent(node)

        await self._each_node(prepare)
        self.counters["up"] = await self._counters()

    async def _each_node(self, fn: Any) -> None:
        nodes = list(self.node_srn)
        by_srn = {self.node_srn[n]: n for n in nodes}
        await self.session.each(lambda srn: fn(by_srn[srn]), list(by_srn))

    async def _push_keys(self, node: str, keys_dir: Path) -> None:
        from orchestrator.keys import node_key_folder

        srn = self.node_srn[node]
        w = self.workdir[node]
        with tempfile.TemporaryDirectory() as tmp:
            folder = node_key_folder(keys_dir, node, Path(tmp) / "keys")
            conn = await self.session.srn(srn)
            await self.session.run(srn, f"mkdir -p {q(w)}/keys/public {q(w)}/keys/private && "
                                        f"chmod 700 {q(w)}/keys/private", check=True)
            async with conn.start_sftp_client() as sftp:
                for f in sorted((folder / "public").iterdir()):
                    await sftp.put(str(f), f"{w}/keys/public/{f.name}")
                for f in sorted((folder / "private").iterdir()):
                    await sftp.put(str(f), f"{w}/keys/private/{f.name}")
                    await sftp.chmod(f"{w}/keys/private/{f.name}", 0o600)

    async def _start_agent(self, node: str) -> None:
        srn = self.node_srn[node]
        host = self.cfg.srn_host(srn)
        w = self.workdir[node]
        ifname = self.radio[node][0]
        cmd = (f"cd {q(w)} && : > agent.log && "
               f"(PYTHONUNBUFFERED=1 setsid nohup {self._agent_cmd(node)} >> agent.log 2>&1 < /dev/null & "
               f"echo $! > agent.pid)")
        await self.session.run(srn, cmd, check=True)
        if self.cfg.pcap:
            for role, capture_if in (("data", ifname), ("control", self.cfg.control_interface)):
                pc = (f"cd {q(w)} && (setsid nohup tcpdump -i {q(capture_if)} -U -s 256 "
                      f"-w pcap/{q(node)}_{q(capture_if)}.pcap tcp port {self.cfg.agent_port} "
                      f"> pcap/tcpdump-{role}.log 2>&1 < /dev/null & echo $! > tcpdump-{role}.pid); "
                      f"sleep 0.3; kill -0 $(cat tcpdump-{role}.pid) 2>/dev/null")
                res = await self.session.run(srn, pc)
                if not res.ok:
                    log.warning("SRN %s (%s): tcpdump on %s did not start (needs root there); no pcap for %s",
                                srn, host, capture_if, node)
        deadline = time.time() + self.ready_timeout_s
        while True:
            res = await self.session.run(
                srn, f"cd {q(w)} && grep -m1 'pamdi-agent ready' agent.log; kill -0 $(cat agent.pid) 2>/dev/null "
                     "&& echo ALIVE || echo DEAD")
            if "pamdi-agent ready" in res.stdout:
                break
            if "DEAD" in res.stdout:
                tail = (await self.session.run(srn, f"tail -n 20 {q(w)}/agent.log")).stdout.strip()
                raise SrnError(srn, host, "agent", f"agent {node} exited before it was ready: {tail[-800:]}")
            if time.time() > deadline:
                raise SrnError(srn, host, "agent", f"agent {node} not ready within {self.ready_timeout_s:.0f} s")
            await asyncio.sleep(0.3)
        if node not in self.listeners:
            # Through the leader SRN's SSH connection to the agent's col0 address (module docstring).
            assert self.leader is not None
            conn = await self.session.srn(self.node_srn[self.leader])
            listener = await conn.forward_local_port("127.0.0.1", 0, self.control_addr[node], self.cfg.agent_port)
            self.listeners[node] = listener
            self.local_port[node] = listener.get_port()

    async def _stop_agent(self, node: str, signal: str = "TERM") -> None:
        srn = self.node_srn[node]
        w = self.workdir.get(node)
        if w is None:
            return
        cmd = (f"cd {q(w)} 2>/dev/null || exit 0; for f in agent.pid tcpdump-data.pid tcpdump-control.pid; do "
               f"[ -f $f ] || continue; p=$(cat $f); "
               f"kill -{signal} -- -$p 2>/dev/null || kill -{signal} $p 2>/dev/null; "
               "for i in $(seq 1 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; "
               "kill -KILL -- -$p 2>/dev/null; kill -KILL $p 2>/dev/null; done; true")
        await self.session.run(srn, cmd)

    async def _counters(self) -> list[dict[str, object]]:
        async def one(node: str) -> dict[str, object]:
            srn = self.node_srn[node]
            ifaces = [self.radio[node][0], self.cfg.control_interface]
            script = "; ".join(
                f"echo {q(i)} $(cat {q(f'/sys/class/net/{i}/statistics/rx_bytes')} "
                f"{q(f'/sys/class/net/{i}/statistics/tx_bytes')} 2>/dev/null)" for i in ifaces)
            res = await self.session.run(srn, script)
            out: dict[str, object] = {"node": node, "srn": srn, "t": time.time()}
            for line in res.stdout.splitlines():
                parts = line.split()
                if len(parts) == 3:
                    role = "data" if parts[0] == self.radio[node][0] else "control"
                    out[role] = {"interface": parts[0], "rx_bytes": int(parts[1]), "tx_bytes": int(parts[2])}
            return out

        nodes = [n for n in self.node_srn if n in self.radio]
        return list(await asyncio.gather(*(one(n) for n in nodes)))

    async def _down_all(self) -> None:
        nodes = [n for n in self.node_srn if n in self.workdir]
        try:
            self.counters["down"] = await self._counters()
        except Exception as err:
            log.warning("colosseum: counters at down: %s", err)
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
        results = await asyncio.gather(*(self._stop_agent(n) for n in nodes), return_exceptions=True)
        for n, r in zip(nodes, results, strict=True):
            if isinstance(r, BaseException):
                log.error("colosseum: stopping agent %s: %s", n, r)
        # The run's keys leave the SRNs with it (a saved container snapshot would carry them) and are
        # never harvested: removed before the work folder comes back.
        removed = await asyncio.gather(*(self.session.run(self.node_srn[n], f"rm -rf {q(self.workdir[n])}/keys")
                                         for n in nodes), return_exceptions=True)
        for n, r in zip(nodes, removed, strict=True):
            if isinstance(r, BaseException):
                log.error("colosseum: removing the keys on SRN %s: %s", self.node_srn[n], r)
        if self.ctx is not None:
            run_dir = Path(self.ctx.run_dir)
            for n in nodes:
                srn = self.node_srn[n]
                try:
                    await self.session.get_tree(srn, self.workdir[n], run_dir / f"srn-{srn:03d}")
                except Exception as err:
                    log.error("colosseum: harvesting SRN %s: %s", srn, err)
            manifest = {
                "control_leader": self.leader,
                "nodes": {n: {"srn": self.node_srn[n], "host": self.cfg.srn_host(self.node_srn[n]),
                              "data_interface": self.radio[n][0], "data_address": self.radio[n][1],
                              "control_address": self.control_addr.get(n), "workdir": self.workdir[n]}
                          for n in nodes},
                "counters": self.counters,
            }
            (run_dir / "colosseum-nodes.json").write_text(json.dumps(manifest, indent=2) + "\n")
