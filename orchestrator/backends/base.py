"""The one small interface every deployment backend implements (local, netns, docker, colosseum).

A backend knows how to bring up one agent per spec node somewhere (processes on loopback,
network namespaces with shaped veth links, containers, Colosseum SRNs), how to reach them,
how to reshape links while a run goes on, and how to tear everything down again, even after
an interruption. Driving the experiment (configuring agents, running policies, collecting
results) is the runner's job and is the same for every backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestrator.spec import ExperimentSpec, LinkParams


@dataclass(frozen=True)
class AgentEndpoint:
    """How to reach the agent of one spec node."""

    node: str
    # ZeroMQ URL the orchestrator uses to configure and query the agent (control plane).
    control: str
    # For each neighbour: the ZeroMQ URL at which that neighbour reaches this agent (data plane).
    # Backends with per-link subnets give a different address per neighbour.
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    run_id: str
    run_dir: Path
    seed: int = 0
    # CurveZMQ key folder of the run (orchestrator/keys.py layout) or None for plaintext. A backend
    # passes ``--keys`` to every agent (shipping ``keys.node_key_folder`` to remote devices).
    keys_dir: Path | None = None
    # Where agents write their JSONL traces when the backend can give them a shared folder.
    trace_dir: Path | None = None
    # Device-time model of the run (pamdi_node/devicetime.py): a backend applies its CPU quotas only
    # under "quota" (under "profile" the agents hold results to the modelled time themselves).
    device_time: str = "native"
    # Time stretch k of the run (orchestrator/timescale.py): the spec handed to ``up`` is already
    # stretched; a backend that drives links from a radio scenario stretches its time line too.
    time_scale: float = 1.0


# Agents that no parent process can take down with it (containers, SRNs) exit after this long
# without a message from the orchestrator; a run's heartbeat (runner.HEARTBEAT_S) keeps them alive.
AGENT_IDLE_EXIT_S = 120.0


# What an agent prints on stdout once bound (``pamdi_node/cli.py``): its name and the URL it got.
READY = re.compile(r"pamdi-agent ready name=(\S+) listen=(\S+)")


def agent_argv(
    node: str,
    listen: str,
    *,
    python: str = "python3",
    threads: int | None = None,
    device: str = "cpu",
    keys_dir: str | Path | None = None,
    trace_dir: str | Path | None = None,
    insecure: bool = False,
    idle_exit_s: float | None = None,
) -> list[str]:
    """The command line that starts one agent (``python -m pamdi_node`` = ``pamdi node``).

    The agent prints ``pamdi-agent ready name=N listen=URL`` on stdout once it is bound (with
    ``tcp://ADDR:*`` the URL shows the port it got). See ``pamdi_node/cli.py`` for every option.
    """
    argv = [python, "-m", "pamdi_node", "--listen", listen, "--name", node, "--device", device]
    if threads:
        argv += ["--threads", str(threads)]
    if keys_dir is not None:
        argv += ["--keys", str(keys_dir)]
    if trace_dir is not None:
        argv += ["--trace-dir", str(trace_dir)]
    if insecure:
        argv.append("--insecure")
    if idle_exit_s is not None:
        argv += ["--idle-exit", f"{idle_exit_s:g}"]
    return argv


def wait_ready(proc: Any, node: str, timeout_s: float, log_path: str | Path) -> str:
    """Wait for an agent process's ready line on its stdout; returns the URL it listens on. A
    RuntimeError names the node when it exits first (and where its log is) or stays silent."""
    import os
    import select
    import time

    assert proc.stdout is not None
    deadline = time.time() + timeout_s
    buf = b""
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent {node} exited with code {proc.returncode} before it was ready (see {log_path})")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if not ready:
            continue
        buf += os.read(proc.stdout.fileno(), 4096)
        m = READY.search(buf.decode(errors="replace"))
        if m:
            return m.group(2)
    raise RuntimeError(f"agent {node} was not ready within {timeout_s:.0f}s")


def write_topology(run_dir: str | Path, topology: Mapping[str, Any]) -> Path:
    """The run folder's ``topology.json``: what a backend built (namespaces or containers, addresses,
    links and how each is shaped), one path for every backend."""
    path = Path(run_dir) / "topology.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(topology, indent=2, default=str) + "\n")
    return path


def agent_env(threads: int) -> dict[str, str]:
    """Environment of an agent process: ``threads`` OpenMP threads that sleep instead of spinning
    when idle (spin-waiting burns CPU quota and the other agents' cores without doing work)."""
    return {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


class BackendTraits:
    """What the runner asks of a backend besides its methods, declared with their defaults (every
    backend subclasses this and overrides what differs; the runner reads them directly, never with
    ``getattr``)."""

    name: str = "?"
    # CurveZMQ unless the user says --insecure (batch and compose projects hand out no keys).
    default_curve: bool = True
    # The device-time model a run gets unless the spec or the user says otherwise: "profile" where
    # agents share this host (local, netns, docker, compose), "native" on real devices.
    default_device_time: str = "native"
    # Where a GPU node's device is checked before a run: "host" (the agents run on this machine,
    # whose torch must see the GPU), "remote" (the agent on the device checks it and says so),
    # "none" (this backend runs no GPU agents: a GPU node is refused).
    gpu_check: str = "remote"
    # Links shaped by a tbf token bucket, which the simulator then models for the predictions.
    shapes_with_token_bucket: bool = False
    # Under device_time "quota": the runner calibrates each node's real speed under its quota first
    # (the backend can run a calibration workload inside the same cgroups).
    calibrates_quota: bool = False
    # The agents are someone else's to stop (a compose project's: compose ends them after the
    # coordinator exits, so a node never exits first and aborts the project): the runner leaves them running.
    agents_outlive_run: bool = False
    # Links whose one-way delay the agents apply themselves (set by ``up``; empty where tc does it).
    agent_delayed_links: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset()


@runtime_checkable
class Backend(Protocol):
    name: str
    default_curve: bool
    default_device_time: str
    gpu_check: str
    shapes_with_token_bucket: bool
    calibrates_quota: bool
    agents_outlive_run: bool
    agent_delayed_links: frozenset[tuple[str, str]] | set[tuple[str, str]]

    def up(self, spec: ExperimentSpec, ctx: RunContext) -> Mapping[str, AgentEndpoint]:
        """Create the network, start an agent per node, return how to reach each one."""
        ...

    def set_link(self, a: str, b: str, params: LinkParams) -> None:
        """Change a link's rate / delay / loss while the run goes on (no rebuild of the queues)."""
        ...

    def link_stats(self) -> list[dict[str, object]]:
        """One sample of per-link counters (bytes, packets, drops, backlog), for the traces."""
        ...

    def down(self) -> None:
        """Stop the agents and remove everything this run created. Idempotent; safe after Ctrl-C."""
        ...


@runtime_checkable
class SupportsFailures(Protocol):
    """Optional: backends that can fail and restore one agent (for the spec's ``failures``)."""

    def kill(self, node: str) -> None:
        """Stop ``node``'s agent abruptly (SIGKILL or equivalent): a device leaving."""
        ...

    def restart(self, node: str) -> AgentEndpoint:
        """Start ``node``'s agent again at the same addresses (the runner re-configures it)."""
        ...
