"""The experiment leader of a Colosseum batch job: runs inside RF node 1's container.

A batch job has no SSH and no orchestrator machine (reservations/batch_mode_format.rst: no access
to the NAS, no SSH through the gateway), so RF node 1 leads the experiment itself. The image's
``/root/radio_api/pamdi_batch_node.py`` (started by ``start.sh``) runs this module next to the
node's agent::

    python3 -m orchestrator.colosseum.batch_lead /root/radio_api/radio.conf

1. It reads ``radio.conf`` (what ``pamdi colosseum batch`` uploaded as the node's ModemConfig:
   the whole spec, the data-plane interface/subnet, the agent port, ``keep_outputs``).
2. It finds every spec node's agent on the radio network: the radio stack assigns the addresses
   (srsRAN hands UEs ``172.16.0.x``), so nobody knows them beforehand. Every host address of the
   data-plane subnet (or, with only an interface configured, of this node's network on it) gets a
   ``ping`` at the agent port — the same ``ping``/``pong`` as ``pamdi node ping`` — and each agent's
   ``pong`` names its node. Rounds repeat until every node has answered or the discovery time
   (``PAMDI_DISCOVERY_TIMEOUT_S``, default 420 s: radios attach and agents load torch) runs out.
3. It drives the spec with the shared runner (``orchestrator.runner.Runner``, as ``pamdi emulate``
   and ``pamdi colosseum run`` do) over ``BatchBackend``: ``up`` returns the discovered agents
   (control and data on the radio address: the agents bind only there), ``down`` stops them.
   Agents run ``--insecure`` (no orchestrator hands out Curve keys in batch mode), so the runner
   runs without Curve. Spec ``failures`` need a backend that can kill agents on other SRNs, which
   batch mode cannot do: the runner warns and ignores them.
4. Results go to ``$PAMDI_LOGS_DIR/runs/<batch>/`` (``/logs`` by default; Colosseum copies each
   container's ``/logs`` to the team's NAS folder after the job, ``pamdi colosseum harvest --job``
   fetches it): the runner's ``summary.json``, ``clocks.json``, ``<policy>/{tasks,spans}.jsonl``,
   ``agents.json``, with ``keep_outputs`` every result tensor in ``<policy>/outputs.npz``, and
   ``batch.json`` (discovered addresses, timings, ``colosseum_config.ini``, exit status).

Progress and the outcome show in status.sh's INFO (state files shared with the Radio API
scripts, see ``node_image/radio_api/common.sh``); on failure the state is ERROR with the reason
and the exit code is non-zero: 2 bad radio.conf, 3 discovery or run failed, 4 a policy timed out
(results kept), 130 stopped by stop.sh (SIGTERM; what was measured is kept).

Only the node image's dependencies are imported (torch, pyzmq, msgpack, pydantic, pyyaml): no
asyncssh or other orchestrator extras, which the image does not carry.
"""

from __future__ import annotations

import configparser
import contextlib
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from orchestrator.backends.base import AgentEndpoint, BackendTraits, RunContext
from orchestrator.spec import ExperimentSpec, LinkParams, SpecError, parse_spec
from pamdi_node import wire

log = logging.getLogger("pamdi.batch_lead")

DEFAULT_RADIO_API_DIR = "/root/radio_api"  # the C2 API: all scripts and radio.conf live here
DEFAULT_LOGS_DIR = "/logs"  # copied to the team's NAS folder after the batch job
DEFAULT_STATE_FILE = "/tmp/pamdi_radio_state"
DEFAULT_DISCOVERY_TIMEOUT_S = 420.0
MAX_CANDIDATES = 4096  # a /20: beyond that a scan round would take too long; configure a smaller subnet
PROBE_ROUND_S = 2.0  # one ping round: radio links (LTE) take a few round trips to connect
PROBE_CHUNK = 256  # sockets open at once

EXIT_OK, EXIT_CONFIG, EXIT_RUN, EXIT_TIMEOUT, EXIT_STOPPED = 0, 2, 3, 4, 130


class LeadError(RuntimeError):
    """The batch experiment cannot go on; the message is the reason status.sh reports."""


# ----------------------------------------------------------------------------------- radio.conf
@dataclass(frozen=True)
class BatchConf:
    path: Path
    batch: str
    node: str
    spec: ExperimentSpec
    agent_port: int
    data_interface: str | None
    data_subnet: str | None
    control_interface: str
    keep_outputs: bool
    raw: Mapping[str, Any] = field(repr=False)


def load_conf(path: str | Path) -> BatchConf:
    """radio.conf as ``orchestrator.colosseum.batch.node_configs`` writes it; errors name the field."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as err:
        raise LeadError(f"{p}: cannot read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise LeadError(f"{p}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise LeadError(f"{p}: expected a JSON object")

    def need(key: str, typ: type | tuple[type, ...]) -> Any:
        if not isinstance(data.get(key), typ) or (isinstance(data.get(key), bool) and typ is int):
            raise LeadError(f"{p}: field {key!r} missing or not {getattr(typ, '__name__', typ)}")
        return data[key]

    if not data.get("leader"):
        raise LeadError(f"{p}: field 'leader' is not true: this node is not the batch's leader (RF node 1)")
    port = need("agent_port", int)
    if not 1 <= port <= 65535:
        raise LeadError(f"{p}: field 'agent_port' {port} is not a TCP port")
    dp = data.get("data_plane") or {}
    if not isinstance(dp, dict) or not (dp.get("interface") or dp.get("subnet")):
        raise LeadError(f"{p}: field 'data_plane' needs an 'interface' or a 'subnet'")
    if dp.get("subnet"):
        try:
            ipaddress.IPv4Network(dp["subnet"], strict=False)
        except ValueError as err:
            raise LeadError(f"{p}: field 'data_plane.subnet': {err}") from None
    try:
        spec = parse_spec(need("spec", dict), origin=f"{p}: spec")
    except SpecError as err:
        raise LeadError(str(err)) from None
    node = need("node", str)
    if node != spec.nodes[0].name:
        raise LeadError(f"{p}: field 'node' {node!r} should be the spec's first node {spec.nodes[0].name!r}")
    return BatchConf(path=p, batch=need("batch", str), node=node, spec=spec, agent_port=port,
                     data_interface=dp.get("interface"), data_subnet=dp.get("subnet"),
                     control_interface=str(data.get("control_interface") or "col0"),
                     keep_outputs=bool(data.get("keep_outputs", False)), raw=data)


# --------------------------------------------------------------------------------- state files
class StateFile:
    """status.sh's state (same files as common.sh's ``set_state``); stop.sh's states are final."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get("PAMDI_STATE_FILE", DEFAULT_STATE_FILE)

    def current(self) -> str:
        try:
            return Path(self.path).read_text().strip()
        except OSError:
            return ""

    def set(self, state: str, info: str) -> None:
        log.info("%s: %s", state, info)
        if self.current() in ("STOPPING", "FINISHED"):
            return
        try:
            for suffix, text in ((".info", info), ("", state)):
                tmp = Path(f"{self.path}{suffix}.lead.tmp")
                tmp.write_text(text.replace("\n", " ") + "\n")
                os.replace(tmp, f"{self.path}{suffix}")
        except OSError as err:
            log.warning("cannot write the state file %s: %s", self.path, err)


# ------------------------------------------------------------------------------------ discovery
def local_addresses() -> dict[str, list[ipaddress.IPv4Interface]]:
    """This container's IPv4 addresses per interface (``ip -o -4 addr show``)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    addrs: dict[str, list[ipaddress.IPv4Interface]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            addrs.setdefault(parts[1].split("@")[0], []).append(ipaddress.IPv4Interface(parts[3]))
    return addrs


def candidate_addresses(conf: BatchConf, addrs: Mapping[str, Sequence[ipaddress.IPv4Interface]]) -> list[str]:
    """Every host address where an agent of this batch may listen."""
    if conf.data_subnet:
        net = ipaddress.IPv4Network(conf.data_subnet, strict=False)
    else:
        own = [a for a in addrs.get(conf.data_interface or "", []) if a.network.prefixlen < 32]
        if not own:
            raise LeadError(f"data-plane interface {conf.data_interface!r} has no IPv4 network here (yet)")
        net = own[0].network
    if net.num_addresses > MAX_CANDIDATES:
        raise LeadError(f"data-plane network {net} has {net.num_addresses} addresses: too many to search for "
                        f"agents (at most {MAX_CANDIDATES}); set a smaller data_plane.subnet in the config")
    return [str(h) for h in (net.hosts() if net.prefixlen < 31 else net)]


def probe(addresses: Sequence[str], port: int, timeout_s: float, ctx: zmq.Context) -> dict[str, dict[str, Any]]:
    """One round of ``ping`` to ``tcp://ADDR:PORT`` for every address at once: {address: pong body}."""
    answers: dict[str, dict[str, Any]] = {}
    for i in range(0, len(addresses), PROBE_CHUNK):
        chunk = addresses[i:i + PROBE_CHUNK]
        socks: dict[zmq.Socket, tuple[str, str]] = {}
        poller = zmq.Poller()
        try:
            for addr in chunk:
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.setsockopt(zmq.MAXMSGSIZE, wire.MAX_HEADER_BYTES)
                s.setsockopt(zmq.IDENTITY, f"batch-lead-{uuid.uuid4().hex[:8]}".encode())
                s.connect(f"tcp://{addr}:{port}")
                mid = wire.new_id()
                s.send_multipart(wire.encode(wire.PING, "orchestrator", {}, msg_id=mid), flags=zmq.NOBLOCK)
                socks[s] = (addr, mid)
                poller.register(s, zmq.POLLIN)
            deadline = time.time() + timeout_s
            pending = len(socks)
            while pending and (left := deadline - time.time()) > 0:
                for s, _ in poller.poll(int(left * 1000) + 1):
                    addr, mid = socks[s]
                    try:
                        msg = wire.decode(s.recv_multipart(copy=False))
                    except wire.WireError as err:
                        log.warning("%s:%d answered with a malformed message: %s", addr, port, err)
                        continue
                    if msg.type == wire.PONG and msg.id == mid and isinstance(msg.body.get("node"), str):
                        answers[addr] = msg.body
                        poller.unregister(s)
                        pending -= 1
        finally:
            for s in socks:
                s.close(0)
    return answers


def discover(nodes: Sequence[str], candidates: Sequence[str], port: int, timeout_s: float,
             progress: Callable[[dict[str, str]], None] | None = None,
             round_s: float = PROBE_ROUND_S) -> dict[str, str]:
    """{node: radio address} once every node's agent has answered, else LeadError naming the missing."""
    found: dict[str, str] = {}
    deadline = time.time() + timeout_s
    ctx = zmq.Context()
    try:
        while True:
            todo = [a for a in candidates if a not in found.values()]
            for addr, pong in probe(todo, port, round_s, ctx).items():
                name = pong["node"]
                if name not in nodes:
                    log.warning("an agent named %r answers at %s:%d but the spec has no such node", name, addr, port)
                elif name in found and found[name] != addr:
                    raise LeadError(f"two agents claim node {name!r}: {found[name]} and {addr} (port {port})")
                else:
                    found[name] = addr
            if progress is not None:
                progress(dict(found))
            if all(n in found for n in nodes):
                return {n: found[n] for n in nodes}
            if time.time() >= deadline:
                missing = [n for n in nodes if n not in found]
                raise LeadError(
                    f"no agent answered for node(s) {', '.join(missing)} within {timeout_s:.0f} s on "
                    f"{len(candidates)} radio addresses ({candidates[0]}..{candidates[-1]}) port {port}; "
                    f"found {', '.join(f'{n}={found[n]}' for n in nodes if n in found) or 'none'}")
    finally:
        ctx.term()


# -------------------------------------------------------------------------------------- backend
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


# ---------------------------------------------------------------------------------------- leader
def _colosseum_ini(radio_api_dir: Path) -> dict[str, dict[str, str]] | None:
    """colosseum_config.ini (RF centre frequency / bandwidth, collaboration server), when pushed in."""
    path = radio_api_dir / "colosseum_config.ini"
    if not path.exists():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as err:
        return {"error": {"message": str(err)}}
    return {s: dict(parser[s]) for s in parser.sections()}


def _save_outputs(run_dir: Path, results: Sequence[Any]) -> None:
    import numpy as np

    for r in results:
        if r.outputs:
            (run_dir / r.policy).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(run_dir / r.policy / "outputs.npz", **{k: np.asarray(v) for k, v in r.outputs.items()})


def _raise_interrupt(signum: int, frame: object) -> None:
    del frame
    # Once: stop.sh signals the whole process group and the node process passes the signal on too;
    # a second KeyboardInterrupt would cut the clean-up that keeps the partial results.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def lead(conf_path: str | Path, *, logs_dir: Path, discovery_timeout_s: float, state: StateFile) -> int:
    from orchestrator.runner import RunError, Runner, RunOptions

    started = time.time()
    manifest: dict[str, Any] = {"conf": str(conf_path), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        conf = load_conf(conf_path)
    except LeadError as err:
        state.set("ERROR", f"leader: {err}")
        return EXIT_CONFIG
    run_dir = logs_dir / "runs" / conf.batch
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest.update(batch=conf.batch, leader=conf.node, nodes=[n.name for n in conf.spec.nodes],
                    agent_port=conf.agent_port, data_plane={"interface": conf.data_interface,
                                                            "subnet": conf.data_subnet},
                    colosseum_config=_colosseum_ini(conf.path.parent))
    backend = BatchBackend(conf, discovery_timeout_s=discovery_timeout_s, state=state)
    runner = Runner(conf.spec, backend, run_dir, RunOptions(curve=False, keep_outputs=conf.keep_outputs))
    runner.run_id = conf.batch
    code, reason = EXIT_OK, ""
    summary: dict[str, Any] = {}
    try:
        state.set("ACTIVE", f"leader: running {conf.spec.name} ({', '.join(runner.policies())})")
        summary = runner.run()
    except KeyboardInterrupt:
        code, reason = EXIT_STOPPED, "stopped (SIGTERM from stop.sh) before the experiment ended; partial results kept"
    except (LeadError, RunError) as err:
        code, reason = EXIT_RUN, str(err)
    except Exception as err:  # a bug or an unexpected agent answer: still a clear line in status.sh
        log.exception("leader failed")
        code, reason = EXIT_RUN, f"{type(err).__name__}: {err}"
    timed_out = [r.policy for r in runner.results if r.timed_out]
    if code == EXIT_OK and timed_out:
        code, reason = EXIT_TIMEOUT, f"policy {', '.join(timed_out)} timed out (results kept, missing tasks failed)"
    if conf.keep_outputs:
        try:
            _save_outputs(run_dir, runner.results)
        except OSError as err:
            log.error("cannot write outputs: %s", err)
    manifest.update(addresses=backend.addresses, candidates=len(backend.candidates),
                    discovery_s=backend.discovery_s, run_s=time.time() - started, counters=backend.counters,
                    finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), exit_code=code, reason=reason,
                    completed={r.policy: {s: v.get("completed") for s, v in r.summary.get("sources", {}).items()}
                               for r in runner.results})
    (run_dir / "batch.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    if code == EXIT_OK:
        done = "; ".join(f"{p}: " + ", ".join(f"{s} {n}" for s, n in c.items())
                         for p, c in manifest["completed"].items())
        state.set("ACTIVE", f"finished: {done} completed in {manifest['run_s']:.1f} s; results in {run_dir}")
        log.info("summary: %s", json.dumps(summary.get("runs", []), default=str))
    else:
        state.set("ERROR", f"leader: {reason}; see {run_dir}")
        log.error("%s", reason)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    radio_api = Path(os.environ.get("PAMDI_RADIO_API_DIR", DEFAULT_RADIO_API_DIR))
    conf_path = Path(args[0]) if args else radio_api / "radio.conf"
    logs_dir = Path(os.environ.get("PAMDI_LOGS_DIR", DEFAULT_LOGS_DIR))
    state = StateFile()
    try:
        timeout = float(os.environ.get("PAMDI_DISCOVERY_TIMEOUT_S", DEFAULT_DISCOVERY_TIMEOUT_S))
    except ValueError:
        state.set("ERROR", "leader: PAMDI_DISCOVERY_TIMEOUT_S is not a number")
        return EXIT_CONFIG
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return lead(conf_path, logs_dir=logs_dir, discovery_timeout_s=timeout, state=state)
    except KeyboardInterrupt:
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
