"""The ``ssh`` backend: one agent per spec node on the hosts of a lab inventory (``lab.yaml``).

The same experiment, spec and traces as every other backend, on the user's own machines (the
paper's testbed: Jetson Xavier NX on a Wi-Fi mesh). Spec nodes map to inventory hosts by name, else
in order (``Inventory.assign``). ``up``:

1. reads every host's facts in parallel (``orchestrator/lab/facts.py``) and refuses the run before
   any agent starts when a host cannot take part (unreachable, wrong key, no Python, pamdi missing
   or another version, no data-plane address, ``shape: true`` without tc rights): one line per host
   naming the host and the cause;
2. on each host: stops what an earlier run left, creates ``<workdir>/<run_id>/``, pushes the
   node's key folder (all public keys, only its own secret), shapes its outgoing links
   (``shape: true``: ``orchestrator/lab/shaping.py``), starts the agent bound to the host's
   **data-plane address** (``--listen tcp://DATA:PORT``; ``orchestrator/lab/agents.py``) and, with
   ``pcap``, tcpdump of the agent port on the data-plane and the management interface;
3. waits for the ready line, then opens the **control path on the host's own SSH connection**: an
   asyncssh direct-tcpip forward ``127.0.0.1:<free port> -> DATA:PORT``. The forwarded connection
   leaves sshd on the host itself, so control messages cross the network only inside SSH, and the
   data-plane interface carries only the agents' model data.

Delays of spec links are applied by the receiving agents (``agent_delayed_links``); rates by tbf on
shaping hosts, changed in place by ``set_link`` and, for a link that names a radio ``scenario``, by
a driver thread that follows it (one SSH round trip per change); a ``shape: false`` host's links
are what they are (``pamdi lab check`` measures
them; the topology records which directions were shaped). ``down`` (idempotent, also after errors
and Ctrl-C) samples the counters, stops the agents, removes the shaping and the run's keys, and
harvests each host's run folder (agent log, traces, pcaps) into ``<run_dir>/hosts/<node>/``, with
``lab-nodes.json`` (hosts, addresses, facts), ``tc_stats.json`` and ``topology.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from orchestrator.backends.base import AGENT_IDLE_EXIT_S, AgentEndpoint, BackendTraits, RunContext, write_topology
from orchestrator.backends.scenarios import drive_scenarios, link_scenarios
from orchestrator.lab import agents, records, shaping
from orchestrator.lab.facts import HostFacts, host_facts
from orchestrator.lab.inventory import Host, Inventory, load_inventory
from orchestrator.lab.session import HostError, LabErrors, LabSession
from orchestrator.spec import ExperimentSpec, LinkParams
from orchestrator.sshlink import LoopThread, q

log = logging.getLogger(__name__)
T = TypeVar("T")


def local_pamdi_version() -> str:
    from pamdi_node import __version__

    return __version__


class SshBackend(BackendTraits):
    name = "ssh"
    default_curve = True  # agents listen on the lab's network: CurveZMQ on
    default_device_time = "native"  # real devices: real speed; predictions from `pamdi lab profile`
    gpu_check = "remote"  # the agent on the device checks its GPU itself and says so in one line
    shapes_with_token_bucket = True  # shaped directions are tbf (set per run: False if none is shaped)

    def __init__(self, inventory: str | Path | Inventory, *, pcap: bool = False, ready_timeout_s: float = 120.0,
                 check_versions: bool = True, scenario_tick_s: float = 0.5) -> None:
        self.inv = inventory if isinstance(inventory, Inventory) else load_inventory(inventory)
        # `pamdi lab check` leaves its measurements beside the inventory: they go into each run folder.
        self.check_report = None if isinstance(inventory, Inventory) else \
            Path(inventory).with_name(Path(inventory).stem + ".check.json")
        self.pcap = bool(pcap)
        self.ready_timeout_s = float(ready_timeout_s)
        self.check_versions = check_versions
        self.loop = LoopThread("lab-ssh")
        self.session = LabSession(self.inv)
        self.hosts: dict[str, Host] = {}  # node -> host
        self.facts: dict[str, HostFacts] = {}  # node -> facts
        self.workdir: dict[str, str] = {}
        self.shaped: dict[str, dict[str, tuple[str, float]]] = {}  # node -> {peer: (addr, rate)}
        self.listeners: dict[str, asyncssh.SSHListener] = {}
        self.local_port: dict[str, int] = {}
        self.captures: dict[str, list[str]] = {}
        self.spec: ExperimentSpec | None = None
        self.ctx: RunContext | None = None
        self.agent_delayed_links: set[tuple[str, str]] = set()
        self.counters: dict[str, Any] = {"up": [], "down": []}
        # Links that follow a radio scenario: their shaped directions are re-rated in place over time
        # (each change is one SSH round trip, hence a coarser tick than netns's).
        self.scenario_tick_s = float(scenario_tick_s)
        self._stop = threading.Event()
        self._scenario_thread: threading.Thread | None = None
        self._agent_locks: dict[str, asyncio.Lock] = {}
        self._down = False

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.loop.call(coro, timeout)

    # ------------------------------------------------------------------------------------ Backend
    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        self.spec, self.ctx = spec, ctx
        try:
            self.hosts = self.inv.assign([n.name for n in spec.nodes])
            for lk in spec.resolved_links():
                if lk.loss > 0 and (self.hosts[lk.a].shape or self.hosts[lk.b].shape):
                    raise ValueError(f"links {lk.a}-{lk.b}: loss {lk.loss:g}: the ssh backend shapes rates (tbf) "
                                     "and delays (in the agents) but emulates no loss on real links; drop `loss`")
                if lk.delay_ms > 0:
                    self.agent_delayed_links.add(lk.key)
            scenarios = link_scenarios(spec)  # every scenario checked before anything starts
            self.call(self._up(spec, ctx))
        except BaseException:
            self.down()  # also closes the connections and the loop thread of a refused spec
            raise
        self.shapes_with_token_bucket = bool(self.shaped)
        if scenarios:
            start = {key: sc.at(0) for key, sc in scenarios.items()}
            self._scenario_thread = threading.Thread(
                target=drive_scenarios, name="ssh-scenarios", daemon=True,
                args=(scenarios, self.set_link, self._stop, self.scenario_tick_s, ctx.time_scale),
                kwargs={"applied": {k: LinkParams(rate_mbit=p.rate_mbit, delay_ms=p.delay_ms, loss=p.loss)
                                    for k, p in start.items()}})
            self._scenario_thread.start()
        return {n: self.endpoint(n) for n in self.hosts}

    def endpoint(self, node: str) -> AgentEndpoint:
        assert self.spec is not None
        return AgentEndpoint(node=node, control=f"tcp://127.0.0.1:{self.local_port[node]}",
                             data={k: self._data_url(node) for k in self.spec.neighbours()[node]})

    def _data_url(self, node: str) -> str:
        return f"tcp://{self.facts[node].data_address}:{self.hosts[node].agent_port}"

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        self.call(self._set_link(a, b, params))

    def link_stats(self) -> list[dict[str, object]]:
        return self.call(self._counters())

    def down(self) -> None:
        if self._down:
            return
        self._down = True
        self._stop.set()
        if self._scenario_thread is not None:
            self._scenario_thread.join(timeout=10)
        self.loop.shut_down(self._down_all if self.workdir else None, self.session.close, "ssh")

    # ------------------------------------------------------------------------- SupportsFailures
    # The runner kills and restarts from timer threads: one at a time per node, so a restart never
    # overlaps the kill before it.
    def kill(self, node: str) -> None:
        host = self.hosts[node]
        self.call(self._one_at_a_time(node, lambda: self.session.run(
            host.name, agents.stop_command(host, self.workdir[node], "KILL"))))

    def restart(self, node: str) -> AgentEndpoint:
        self.call(self._one_at_a_time(node, lambda: self._start_agent(node)))
        return self.endpoint(node)

    async def _one_at_a_time(self, node: str, step: Callable[[], Awaitable[object]]) -> None:
        async with self._agent_locks.setdefault(node, asyncio.Lock()):
            await step()

    # ---------------------------------------------------------------------------------- helpers
    async def _preflight(self) -> None:
        """Every host's facts; a host that cannot take part stops the run here, before any agent."""
        by_host = {h.name: n for n, h in self.hosts.items()}
        local = local_pamdi_version()

        async def one(name: str) -> tuple[HostFacts | HostError]:
            try:
                return (await host_facts(self.session, self.inv.host(name), local),)
            except HostError as err:  # reported with the other hosts' problems, all at once
                return (err,)

        errors: list[HostError] = []
        for name, (f,) in (await self.session.each(one, by_host)).items():
            if isinstance(f, HostError):
                errors.append(f)
                continue
            self.facts[by_host[name]] = f
            for p in f.problems:
                kind, _, detail = p.partition(": ")
                if kind == "version" and not self.check_versions:
                    log.warning("host %s: %s", name, p)
                    continue
                errors.append(self.session.error(name, kind, detail))
        if errors:
            raise LabErrors(errors)

    async def _up(self, spec: ExperimentSpec, ctx: RunContext) -> None:
        await self._preflight()

        async def prepare(name: str) -> None:
            node = next(n for n, h in self.hosts.items() if h.name == name)
            host, f = self.hosts[node], self.facts[node]
            base = f.workdir(host)
            await self.session.run(name, agents.stale_cleanup(host, base))
            w = f"{base}/{ctx.run_id}"
            self.workdir[node] = w
            await self.session.run(name, f"mkdir -p {q(w)}/traces {q(w)}/pcap && chmod 700 {q(w)}", check=True)
            if ctx.keys_dir is not None:
                await self._push_keys(node, Path(ctx.keys_dir))
            if host.shape:
                await self._shape(node)
            await self._start_agent(node)

        await self.session.each(prepare, [h.name for h in self.hosts.values()])
        self.counters["up"] = await self._counters()
        self._write_topology()

    async def _push_keys(self, node: str, keys_dir: Path) -> None:
        from orchestrator.keys import node_key_folder

        name, w = self.hosts[node].name, self.workdir[node]
        with tempfile.TemporaryDirectory() as tmp:
            folder = node_key_folder(keys_dir, node, Path(tmp) / "keys")
            await self.session.run(name, f"mkdir -p {q(w)}/keys/public {q(w)}/keys/private && "
                                         f"chmod 700 {q(w)}/keys/private", check=True)
            for f in sorted((folder / "public").iterdir()):
                await self.session.put(name, f, f"{w}/keys/public/{f.name}")
            for f in sorted((folder / "private").iterdir()):
                await self.session.put(name, f, f"{w}/keys/private/{f.name}", mode=0o600)

    def _peer_rates(self, node: str) -> dict[str, tuple[str, float]]:
        assert self.spec is not None
        out = {}
        for peer in self.spec.neighbours()[node]:
            link = self.spec.link(node, peer)
            if link is not None:
                rate = link.rate_mbit
                if link.scenario is not None:  # shaped as the scenario starts (its driver goes on from there)
                    import radio_scenarios

                    k = self.ctx.time_scale if self.ctx is not None else 1.0
                    rate = radio_scenarios.get(link.scenario).at(0).rate_mbit / k
                out[peer] = (str(self.facts[peer].data_address), rate)
        return out

    async def _shape(self, node: str) -> None:
        host, f = self.hosts[node], self.facts[node]
        peers = self._peer_rates(node)
        if not peers:
            return
        assert f.data_interface is not None
        self.shaped[node] = peers  # before the attempt: down removes a half-built qdisc too
        res = await self.session.run(host.name, shaping.install_script(f.tc_prefix, f.data_interface, peers))
        if res.exit_status != 0:
            raise self.session.error(host.name, "tc", f"shaping {f.data_interface} failed: "
                                     f"{' '.join(res.stderr.split())[-300:]}")

    async def _set_link(self, a: str, b: str, params: LinkParams) -> None:
        """The link's rate on its shaped directions (delays stay the agents' spec values, loss is not
        emulated: see the module docstring)."""
        for src, dst in ((a, b), (b, a)):
            if dst not in self.shaped.get(src, {}):
                log.info("ssh: %s -> %s is not shaped (shape: false on host %s): rate %s not applied", src, dst,
                         self.hosts[src].name, params.rate_mbit)
                continue
            f = self.facts[src]
            assert f.data_interface is not None
            k = shaping.peer_classes(self.shaped[src])[dst]
            await self.session.run(self.hosts[src].name, shaping.change_command(
                f.tc_prefix, f.data_interface, k, params.rate_mbit), check=True)
            self.shaped[src][dst] = (self.shaped[src][dst][0], params.rate_mbit)

    def _agent_args(self, node: str) -> list[str]:
        assert self.spec is not None
        w = self.workdir[node]
        n = self.spec.node(node)
        args = ["--listen", self._data_url(node), "--name", node, "--device", n.device_type,
                "--threads", str(n.threads), "--trace-dir", f"{w}/traces", "--idle-exit", f"{AGENT_IDLE_EXIT_S:g}"]
        if self.ctx is not None and self.ctx.keys_dir is not None:
            args += ["--keys", f"{w}/keys"]
        else:
            args.append("--insecure")
        return args

    async def _start_agent(self, node: str) -> None:
        assert self.spec is not None and self.ctx is not None
        host, f, w = self.hosts[node], self.facts[node], self.workdir[node]
        env = agents.agent_env(host, self.spec.node(node).threads)
        await self.session.run(host.name, agents.start_command(host, w, self._agent_args(node), env,
                                                               self.ctx.run_id, node), check=True)
        if self.pcap and node not in self.captures:
            self.captures[node] = []
            tcpdump = "tcpdump" if f.shape_via == "root" else "sudo -n tcpdump"
            for role, ifname in (("data", f.data_interface), ("mgmt", f.mgmt_interface)):
                if ifname is None or (role == "mgmt" and ifname == f.data_interface):
                    continue
                res = await self.session.run(host.name, agents.capture_command(w, ifname, role, host.agent_port,
                                                                               tcpdump))
                if res.exit_status == 0:
                    self.captures[node].append(f"{role}-{ifname}.pcap")
                else:
                    log.warning("host %s: tcpdump on %s did not start (needs root there); no %s pcap for %s",
                                host.name, ifname, role, node)
        deadline = time.time() + self.ready_timeout_s
        while True:
            res = await self.session.run(host.name, agents.ready_probe(host, w))
            if "pamdi-agent ready" in res.stdout:
                break
            if "DEAD" in res.stdout:
                tail = (await self.session.run(host.name, f"tail -n 5 {q(w)}/agent.log")).stdout
                raise self.session.error(host.name, "agent", f"agent {node} exited before it was ready: "
                                         f"{' '.join(tail.split())[-400:]}")
            if time.time() > deadline:
                raise self.session.error(host.name, "agent", f"agent {node} not ready within "
                                         f"{self.ready_timeout_s:.0f} s (see {w}/agent.log)")
            await asyncio.sleep(0.3)
        if node not in self.listeners:
            # Control on the host's own SSH connection, to its agent's data-plane address (module docstring).
            conn = await self.session.conn(host.name)
            listener = await conn.forward_local_port("127.0.0.1", 0, str(f.data_address), host.agent_port)
            self.listeners[node] = listener
            self.local_port[node] = listener.get_port()

    async def _counters(self) -> list[dict[str, object]]:
        async def one(node: str) -> dict[str, object]:
            host, f = self.hosts[node], self.facts[node]
            res = await self.session.run(host.name, records.counters_script(f, node in self.shaped))
            return records.parse_counters(node, host, f, res.stdout, self.shaped.get(node))

        nodes = [n for n in self.hosts if n in self.facts]
        return list(await asyncio.gather(*(one(n) for n in nodes)))

    def _write_topology(self) -> None:
        if self.ctx is None or self.spec is None:
            return
        if self.check_report is not None and self.check_report.is_file():
            Path(self.ctx.run_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.ctx.run_dir) / "lab-check.json").write_bytes(self.check_report.read_bytes())
        write_topology(self.ctx.run_dir, records.lab_topology(self.spec, self.hosts, self.facts, self.shaped,
                                                              self.agent_delayed_links, self.workdir))

    async def _down_all(self) -> None:
        nodes = [n for n in self.hosts if n in self.workdir]
        try:
            self.counters["down"] = await self._counters()
        except Exception as err:
            log.warning("ssh: counters at down: %s", err)
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()

        async def stop(node: str) -> None:
            host, w = self.hosts[node], self.workdir[node]
            await self.session.run(host.name, agents.stop_command(host, w))
            if node in self.shaped and self.facts[node].data_interface:
                f = self.facts[node]
                await self.session.run(host.name, shaping.remove_command(f.tc_prefix, str(f.data_interface)))
            # The run's keys leave the host with the run, before its folder comes back: never harvested.
            await self.session.run(host.name, f"rm -rf {q(w)}/keys")

        results = await asyncio.gather(*(stop(n) for n in nodes), return_exceptions=True)
        for n, r in zip(nodes, results, strict=True):
            if isinstance(r, BaseException):
                log.error("ssh: stopping agent %s on host %s: %s", n, self.hosts[n].name, r)
        if self.ctx is None:
            return
        run_dir = Path(self.ctx.run_dir)
        for n in nodes:
            try:
                await self.session.get_tree(self.hosts[n].name, self.workdir[n], run_dir / "hosts" / n)
            except (HostError, OSError, asyncssh.Error) as err:
                log.error("ssh: harvesting host %s: %s", self.hosts[n].name, err)
        (run_dir / "tc_stats.json").write_text(json.dumps(self.counters, indent=2) + "\n")
        (run_dir / "lab-nodes.json").write_text(json.dumps({
            n: {"host": self.hosts[n].name, "workdir": self.workdir[n], "captures": self.captures.get(n, []),
                "facts": self.facts[n].as_dict()} for n in nodes}, indent=2) + "\n")
