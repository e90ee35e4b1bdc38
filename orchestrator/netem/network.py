"""An emulated network: one namespace per node, one veth pair (own /24) per link, shaped by tc.

    root namespace ── pm<tok>c<i> ═══ ctl0 ── node namespace  (control path, 169.254.X.0/30 per node)
    node A ── l<i> ═══════════════════════ l<i> ── node B     (direct link: tbf [+ netem] on each end)
    node A ── l<i> ═══ middle namespace (forwarder) ═══ l<i> ── node B   (delay/loss without netem)

The control path is like Colosseum's ``col0``: a wired path from the orchestrator to each node
that bypasses the emulated links. It uses link-local addresses (169.254.0.0/16, never routed) so
the root namespace gets no private-range address; link subnets (10.0.0.0/8) exist only inside
the run's namespaces, so concurrent runs can reuse them. Node namespaces have no default route:
agents can only reach their neighbours and the orchestrator's control end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator.netem import cgroups, names, tc
from orchestrator.netem import netns as nsops
from orchestrator.netem.teardown import teardown_record

CONTROL_IF = "ctl0"
MAX_NODES = 63  # /30 control subnets in one /24
LOCK_FILE = "alloc.lock"


@dataclass
class NodeHandle:
    name: str
    netns: str
    index: int
    control_host: str  # root-namespace address of the control path
    control_addr: str  # the node's address on the control path
    root_if: str
    cgroup: Path | None = None
    cpus: float | None = None


@dataclass
class LinkState:
    rate_mbit: float
    delay_ms: float = 0.0
    loss: float = 0.0
    jitter_ms: float = 0.0


@dataclass
class LinkHandle:
    index: int
    a: str
    b: str
    if_a: str  # interface name inside node a's namespace
    if_b: str
    addr_a: str
    addr_b: str
    state: LinkState
    middle: str | None = None  # middle namespace holding the forwarder
    netem: bool = False
    forwarder: subprocess.Popen | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> tuple[str, str]:
        return (self.a, self.b) if self.a < self.b else (self.b, self.a)

    def addr_of(self, node: str) -> str:
        return self.addr_a if node == self.a else self.addr_b


class NetworkError(RuntimeError):
    pass


def _require_root() -> None:
    if os.geteuid() != 0:
        raise NetworkError("network-namespace emulation needs root (namespaces, veth, tc, cgroups)")


class EmulatedNetwork:
    """Builds and tears down one run's namespaces, links, qdiscs, cgroups and helper processes."""

    def __init__(self, purpose: str = "", *, use_netem: bool | None = None, seed: int = 0):
        _require_root()
        self.token = names.new_token()
        self.seed = seed
        self.record = names.RunRecord(token=self.token, owner_pid=os.getpid(), purpose=purpose,
                                      owner_start=names.process_start_time(os.getpid()))
        self.record.save()
        self.nodes: dict[str, NodeHandle] = {}
        self.links: dict[tuple[str, str], LinkHandle] = {}
        self.procs: list[subprocess.Popen] = []
        self.use_netem = tc.netem_available() if use_netem is None else use_netem
        self.cg = cgroups.detect()
        self._control_octet: int | None = None
        self._closed = False

    # ------------------------------------------------------------------ nodes
    def _allocate_control_octet(self) -> int:
        """A 169.254.X.0/24 not used in the root namespace (under a lock: concurrent runs)."""
        names.STATE_DIR.mkdir(parents=True, exist_ok=True)
        used = {addr.split(".")[2] for addr, _ in nsops.root_addresses() if addr.startswith("169.254.")}
        for octet in range(200, 255):
            if str(octet) not in used:
                return octet
        raise NetworkError("no free 169.254.X.0/24 for the control path")

    def add_node(self, name: str, *, cpus: float | None = None) -> NodeHandle:
        if name in self.nodes:
            raise NetworkError(f"node {name!r} added twice")
        if len(self.nodes) >= MAX_NODES:
            raise NetworkError(f"at most {MAX_NODES} nodes per run")
        index = len(self.nodes)
        ns = names.netns_name(self.token, f"n-{name}")
        self.record.namespaces.append(ns)
        self.record.save()
        nsops.create_netns(ns)
        root_if = names.ifname(self.token, f"c{index}")
        peer_tmp = names.ifname(self.token, f"c{index}n")
        self.record.root_links.append(root_if)
        self.record.save()
        with self._alloc_lock():
            if self._control_octet is None:
                self._control_octet = self._allocate_control_octet()
            nsops.create_veth(root_if, None, peer_tmp, ns, no_offload=False)
            host = f"169.254.{self._control_octet}.{4 * index + 1}"
            nsops.add_address(None, root_if, host, 30)
        addr = f"169.254.{self._control_octet}.{4 * index + 2}"
        with nsops.ns_handle(ns) as h:
            idx = h.link_lookup(ifname=peer_tmp)[0]
            h.link("set", index=idx, state="down")
            h.link("set", index=idx, ifname=CONTROL_IF)
            h.link("set", index=idx, state="up")
            h.addr("add", index=idx, address=addr, prefixlen=30)
        node = NodeHandle(name, ns, index, host, addr, root_if, cpus=cpus)
        if self.cg is not None:
            node.cgroup = cgroups.create(self.cg, self.token, name, cpus)
            self.record.cgroups.append(str(node.cgroup))
            self.record.save()
        elif cpus is not None:
            raise NetworkError("no cgroup cpu controller on this host: cannot give a node a CPU quota")
        self.nodes[name] = node
        return node

    @contextlib.contextmanager
    def _alloc_lock(self):
        path = names.STATE_DIR / LOCK_FILE
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def set_cpus(self, node: str, cpus: float | None) -> None:
        handle = self.nodes[node]
        if self.cg is None or handle.cgroup is None:
            raise NetworkError("no cgroup cpu controller on this host")
        cgroups.set_quota(self.cg, handle.cgroup, cpus)
        handle.cpus = cpus

    # ------------------------------------------------------------------ links
    def add_link(
        self, a: str, b: str, rate_mbit: float, delay_ms: float = 0.0, loss: float = 0.0,
        *, delay_line: bool = False, jitter_ms: float = 0.0,
    ) -> LinkHandle:
        """Join nodes a and b. ``delay_line`` forces a delay/loss stage even if both start at 0
        (needed when a scenario will add delay or loss later). Jitter needs netem (the forwarder
        has none); without it the agents apply delay and jitter (the caller leaves them out here)."""
        for n in (a, b):
            if n not in self.nodes:
                raise NetworkError(f"link {a}-{b}: unknown node {n!r}")
        self._check_jitter(a, b, jitter_ms)
        key = (a, b) if a < b else (b, a)
        if key in self.links:
            raise NetworkError(f"link {a}-{b} added twice")
        i = len(self.links)
        ns_a, ns_b = self.nodes[a].netns, self.nodes[b].netns
        tmp_a, tmp_b = names.ifname(self.token, f"l{i}a"), names.ifname(self.token, f"l{i}b")
        want_stage = delay_line or delay_ms > 0 or loss > 0
        middle = None
        if want_stage and not self.use_netem:
            middle = names.netns_name(self.token, f"x-{i}")
            self.record.namespaces.append(middle)
            self.record.save()
            nsops.create_netns(middle)
            mid_a, mid_b = names.ifname(self.token, f"l{i}ma"), names.ifname(self.token, f"l{i}mb")
            nsops.create_veth(tmp_a, ns_a, mid_a, middle)
            nsops.create_veth(mid_b, middle, tmp_b, ns_b)
        else:
            nsops.create_veth(tmp_a, ns_a, tmp_b, ns_b)
        if_name = f"l{i}"
        addr_a, addr_b = f"10.{100 + i // 256}.{i % 256}.1", f"10.{100 + i // 256}.{i % 256}.2"
        for ns, tmp, addr in ((ns_a, tmp_a, addr_a), (ns_b, tmp_b, addr_b)):
            with nsops.ns_handle(ns) as h:
                idx = h.link_lookup(ifname=tmp)[0]
                h.link("set", index=idx, state="down")
                h.link("set", index=idx, ifname=if_name)
                h.link("set", index=idx, state="up")
                h.addr("add", index=idx, address=addr, prefixlen=24)
        netem = want_stage and self.use_netem
        for ns in (ns_a, ns_b):
            tc.shape(ns, if_name, rate_mbit, delay_ms=delay_ms, loss=loss, jitter_ms=jitter_ms, with_netem=netem)
        link = LinkHandle(i, a, b, if_name, if_name, addr_a, addr_b,
                          LinkState(rate_mbit, delay_ms, loss, jitter_ms), middle=middle, netem=netem)
        if middle is not None:
            link.forwarder = self._start_forwarder(link, mid_a, mid_b)
        self.links[key] = link
        return link

    def _start_forwarder(self, link: LinkHandle, mid_a: str, mid_b: str) -> subprocess.Popen:
        assert link.middle is not None
        cmd = [
            sys.executable, "-m", "orchestrator.netem.nsexec", "--netns", link.middle,
            *(["--die-with-parent"] if threading.current_thread() is threading.main_thread() else []), "--",
            sys.executable, "-m", "orchestrator.netem.forwarder", "--a", mid_a, "--b", mid_b,
            "--delay-ms", str(link.state.delay_ms), "--loss", str(link.state.loss),
            "--seed", str(self.seed * 1000 + link.index), "--run", self.token,
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self._track(proc)
        line = _read_line(proc.stdout, timeout=15.0)
        if not line or not json.loads(line).get("ready"):
            raise NetworkError(f"delay/loss forwarder for link {link.a}-{link.b} did not start")
        return proc

    def link(self, a: str, b: str) -> LinkHandle:
        key = (a, b) if a < b else (b, a)
        try:
            return self.links[key]
        except KeyError:
            raise NetworkError(f"no link {a}-{b}") from None

    def _check_jitter(self, a: str, b: str, jitter_ms: float) -> None:
        if jitter_ms > 0 and not self.use_netem:
            raise NetworkError(f"link {a}-{b}: jitter {jitter_ms:g} ms needs netem (sch_netem), which this kernel "
                               "lacks, and the user-space forwarder does not jitter; drop the jitter or use a "
                               "kernel with netem (modprobe sch_netem)")

    def set_link(self, a: str, b: str, rate_mbit: float, delay_ms: float = 0.0, loss: float = 0.0,
                 jitter_ms: float = 0.0) -> None:
        """Change a link in place: tbf rate, netem child or forwarder delay line."""
        link = self.link(a, b)
        self._check_jitter(a, b, jitter_ms)
        with link.lock:
            if rate_mbit != link.state.rate_mbit:
                for node in (link.a, link.b):
                    tc.change_rate(self.nodes[node].netns, link.if_a, rate_mbit)
            if (delay_ms, loss, jitter_ms) != (link.state.delay_ms, link.state.loss, link.state.jitter_ms):
                if link.netem:
                    for node in (link.a, link.b):
                        tc.change_netem(self.nodes[node].netns, link.if_a, delay_ms, loss, jitter_ms)
                elif link.forwarder is not None:
                    assert link.forwarder.stdin is not None
                    link.forwarder.stdin.write((json.dumps({"delay_ms": delay_ms, "loss": loss}) + "\n").encode())
                    link.forwarder.stdin.flush()
                else:
                    raise NetworkError(
                        f"link {a}-{b} was built without a delay/loss stage; give it delay, loss or a "
                        "scenario at start to change them during the run"
                    )
            link.state = LinkState(rate_mbit, delay_ms, loss, jitter_ms)

    def link_stats(self) -> list[dict[str, object]]:
        """One sample per link and direction: tc counters of the sending end, forwarder losses."""
        out: list[dict[str, object]] = []
        for link in self.links.values():
            fwd = self._forwarder_stats(link) if link.forwarder is not None else None
            for src, dst, fkey in ((link.a, link.b, "a_to_b"), (link.b, link.a, "b_to_a")):
                row: dict[str, object] = {"link": f"{link.a}-{link.b}", "src": src, "dst": dst,
                                          "rate_mbit": link.state.rate_mbit, "delay_ms": link.state.delay_ms,
                                          "jitter_ms": link.state.jitter_ms, "loss": link.state.loss}
                try:
                    row.update(tc.stats(self.nodes[src].netns, link.if_a))
                except Exception as err:  # a namespace going away during teardown
                    row["error"] = str(err)
                if fwd is not None:
                    row["forwarder_lost"] = fwd.get(fkey, {}).get("lost", 0)
                    row["forwarder_tx"] = fwd.get(fkey, {}).get("tx", 0)
                out.append(row)
        return out

    def _forwarder_stats(self, link: LinkHandle) -> dict:
        proc = link.forwarder
        assert proc is not None and proc.stdin is not None
        with link.lock:
            if proc.poll() is not None:
                return {}
            try:
                proc.stdin.write(b'{"stats": true}\n')
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return {}
            line = _read_line(proc.stdout, timeout=2.0)
        try:
            return json.loads(line) if line else {}
        except ValueError:
            return {}

    # ------------------------------------------------------------------ processes
    def spawn(
        self, node: str, argv: list[str], *, stdout: IO | int | None = None, stderr: IO | int | None = None,
        env: dict[str, str] | None = None, cwd: str | None = None,
    ) -> subprocess.Popen:
        """Start ``argv`` inside the node's namespace and CPU cgroup."""
        handle = self.nodes[node]
        cmd = [sys.executable, "-m", "orchestrator.netem.nsexec", "--netns", handle.netns]
        if threading.current_thread() is threading.main_thread():
            cmd.append("--die-with-parent")  # (nsexec.py: from another thread it could die with the thread)
        if handle.cgroup is not None:
            cmd += ["--cgroup-procs", str(cgroups.procs_file(handle.cgroup))]
        cmd += ["--", *argv]
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env, cwd=cwd, start_new_session=True)
        self._track(proc)
        return proc

    def _track(self, proc: subprocess.Popen) -> None:
        self.procs.append(proc)
        self.record.pids.append(proc.pid)
        self.record.save()

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Stop every process, remove namespaces, control links, cgroups and the run record. Idempotent."""
        if self._closed:
            return
        self._closed = True
        teardown_record(self.record, procs=self.procs)

    def __enter__(self) -> EmulatedNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_line(stream: IO[bytes] | None, timeout: float) -> bytes:
    if stream is None:
        return b""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return b""
    return stream.readline()
