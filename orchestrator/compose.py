"""``pamdi compose SPEC --out DIR``: a docker-compose project that runs an experiment by itself.

Rendered files (paths relative to DIR, so the folder can be moved or copied to another host)::

    docker-compose.yml        one service per spec node (healthy once its agent listens) + a
                              ``coordinator`` that starts when every node is healthy; a network
                              per link; the Compose Specification (no ``version:``)
    .env                      COMPOSE_PROJECT_NAME (``pamdi-<spec>``) for Compose v2 and v1 alike
    pamdi/spec.yaml           the spec (naming pamdi/profiles as its profile folder)
    pamdi/profiles/           the profiles the run predicts and holds with (this host's own unless
                              the spec names a folder), so the coordinator measures nothing
    pamdi/nodes/<node>.json   what a node's entry script reads at start (PAMDI_NODE_CONFIG):
                              its links (subnet, rate, delay, loss; a scenario link's stretched
                              points as its ``schedule``) and its agent arguments
    pamdi/run.json            the coordinator's job: endpoints, policies, run options
    traces/                   mounted at /traces everywhere: agents' traces, per-policy records,
                              summary.json; with radio scenarios scenario_clock.json and
                              scenarios/<node>.jsonl (every link change, when, what tc reports)
    keys/                     the run's CurveZMQ keys (0700; never under traces/): keys/nodes/<node>
                              (every public key, its own secret) mounted read-only into that node,
                              keys/coordinator (the orchestrator's secret) into the coordinator.
                              ``insecure=True`` renders a plaintext project without them.

Start it with ``docker compose up --abort-on-container-exit --exit-code-from coordinator`` (or
``docker-compose up ...`` with Compose v1). Each node shapes its own links from its config (tbf, netem when the
kernel has it) and starts ``pamdi node``; the coordinator (same image, ``pamdi compose-run``)
runs the same ``orchestrator.runner.Runner`` as ``pamdi emulate`` over fixed endpoints, writes
the results under ``traces/`` and exits, which stops the nodes (they flush their traces on
SIGTERM). Remove everything with ``docker compose down``. A link that names a radio scenario
follows it over time inside its two containers (``orchestrator/compose_scenarios.py``: the clock,
the stretch, the log). ``pamdi compose --up`` does all of it from the host and writes the report
(``orchestrator/compose_up.py``).

Addresses are fixed at render time: the subnets are picked from ``subnet_pool`` avoiding the
Docker networks and routes of the rendering host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.backends.base import agent_argv, agent_env
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
from orchestrator.backends.static import StaticBackend
from orchestrator.compose_scenarios import SCENARIO_CLOCK, first_point, follower_config, link_schedules
from orchestrator.netem.cgroups import quota_us
from orchestrator.netem.docker_cleanup import PROJECT_LABEL, RUN_LABEL
from orchestrator.spec import ExperimentSpec

log = logging.getLogger(__name__)

CONFIG_MOUNT = "/pamdi"
COORDINATOR = "coordinator"
COMPOSE_UP = "docker compose up --abort-on-container-exit --exit-code-from coordinator"
# A node's healthcheck: its agent accepts connections on the control port.
AGENT_HEALTH = "import socket; socket.create_connection(('127.0.0.1', {port}), 2).close()"


def compose_cli() -> list[str]:
    """How Compose is invoked on this host: ``docker compose`` (v2, the current one) when the
    plugin answers, else the v1 ``docker-compose`` when installed, else ``docker compose``."""
    import shutil
    import subprocess

    if shutil.which("docker"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0:
                return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]


def compose_project_name(spec_name: str) -> str:
    """The Compose project name of a spec's project: lower case, [a-z0-9_-] (Compose's rule)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", f"pamdi-{spec_name}".lower()).strip("-_")
    return name or "pamdi"


@dataclass(frozen=True)
class ComposeProject:
    directory: Path
    compose_file: Path
    run_id: str
    services: tuple[str, ...]
    networks: tuple[str, ...]


def _service_name(node: str) -> str:
    if node == COORDINATOR:
        raise ValueError(f"node name {COORDINATOR!r} is reserved for the compose coordinator service")
    return node


def render_compose(
    spec: ExperimentSpec,
    out_dir: Path,
    *,
    image: str = DEFAULT_IMAGE,
    policies: Sequence[str] | None = None,
    subnet_pool: str = DEFAULT_SUBNET_POOL,
    taken_subnets: Sequence[str] | None = None,
    cpu_quota: bool = True,
    device_time: str | None = None,
    time_stretch: float | None = None,
    task_timeout_s: float = 60.0,
    run_timeout_s: float | None = None,
    keep_outputs: bool = False,
    insecure: bool = False,
) -> ComposeProject:
    """Write the compose project for ``spec`` into ``out_dir``; ``taken_subnets`` None = ask Docker.

    The device-time model (default ``profile``) and the time stretch are settled here, on the host
    that will run the containers: links are shaped stretched, ``--cpus`` is set only under
    ``quota``, and the coordinator gets the stretch and the profiles to use."""
    from orchestrator.devices import node_speed
    from orchestrator.hostprofiles import run_profiles
    from orchestrator.netem.devices import node_quota
    from orchestrator.runner import resolve_device_time
    from orchestrator.spec import DEFAULT_POLICIES
    from orchestrator.timescale import estimate_headroom, stretch_spec
    from pamdi_node.models.profile import profile_filename

    out_dir = Path(out_dir)
    device_time = resolve_device_time(device_time, spec, StaticBackend)
    run_policies = list(policies) if policies else list(spec.policy)
    if run_policies == ["all"]:
        run_policies = list(DEFAULT_POLICIES)
    profiles, choice = run_profiles(spec, device_time)
    (out_dir / "pamdi" / "profiles").mkdir(parents=True, exist_ok=True)
    for src in spec.sources:
        profiles[src.name].save(out_dir / "pamdi" / "profiles" / profile_filename(src.model, src.batch, 1))
    nominal = spec.model_copy(update={"profiles": f"{CONFIG_MOUNT}/profiles"})
    if device_time == "profile" and time_stretch is None:
        time_stretch = estimate_headroom(spec, run_policies, profiles).stretch
    k = float(time_stretch or 1.0)
    schedules = link_schedules(spec, k)  # every scenario checked (and stretched) before anything is written
    spec = stretch_spec(spec, k)  # what the node containers shape
    for (a, b), sched in schedules.items():
        if any(p["delay_ms"] or p["loss"] for p in sched["points"]) and not _host_has_netem():
            log.warning("%s-%s: scenario %s's delay and loss changes not emulated (no netem in this kernel); "
                        "rate only (each change says so in traces/scenarios/)", a, b, sched["scenario"])
    for node in spec.nodes:
        _service_name(node.name)
    if taken_subnets is None:
        from orchestrator.image.dockerutil import DockerError, client

        try:
            taken_subnets = used_subnets(client())
        except DockerError:
            taken_subnets = []
    links = spec.resolved_links()
    subnets = free_subnets(1 + len(links), subnet_pool, taken_subnets)
    control = subnets[0]
    nets = {link.key: LinkNet(link.a, link.b, f"{link.a}-{link.b}", net)
            for link, net in zip(links, subnets[1:], strict=True)}
    names = [n.name for n in spec.nodes]
    control_ip = {n: str(control.network_address + 10 + i) for i, n in enumerate(names)}
    run_id = f"{spec.name}-compose"
    labels = {PROJECT_LABEL: "pamdi", RUN_LABEL: run_id}

    def link_of(a: str, b: str) -> LinkNet:
        return nets[(a, b) if a < b else (b, a)]

    (out_dir / "pamdi" / "nodes").mkdir(parents=True, exist_ok=True)
    (out_dir / "traces").mkdir(parents=True, exist_ok=True)
    keys_dir = None if insecure else _render_keys(out_dir / "keys", names)
    services: dict[str, Any] = {}
    neighbours = spec.neighbours()
    from orchestrator.gpuprofiles import check_gpu_nodes

    check_gpu_nodes(spec, StaticBackend.name, StaticBackend.gpu_check)  # the node image's torch is CPU-only
    for node in spec.nodes:
        n = node.name
        cpus, threads = node_quota(node_speed(node), node.threads, node.device)
        shaping = []
        for peer in neighbours[n]:
            net = link_of(n, peer)
            link = spec.link(n, peer)
            assert link is not None
            schedule = schedules.get((net.a, net.b))
            if schedule is None:
                shaping.append(link_shaping(net, peer, link))
            else:  # starts at its first point; the node's follower takes it from there
                shaping.append({**link_shaping(net, peer, first_point(schedule)), "schedule": schedule})
        args = agent_argv(n, f"tcp://0.0.0.0:{AGENT_PORT}", threads=threads, trace_dir=f"{TRACE_MOUNT}/agents",
                          keys_dir=None if keys_dir is None else KEYS_MOUNT, insecure=keys_dir is None)[3:]
        node_config: dict[str, Any] = {"node": n, "links": shaping, "agent_args": args}
        if any("schedule" in sh for sh in shaping):
            node_config.update(follower_config(n))
        (out_dir / "pamdi" / "nodes" / f"{n}.json").write_text(json.dumps(node_config, indent=2) + "\n")
        networks: dict[str, Any] = {"ctl": {"ipv4_address": control_ip[n]}}
        for peer in neighbours[n]:
            net = link_of(n, peer)
            networks[net.name] = {"ipv4_address": net.address(n)}
        service: dict[str, Any] = {
            "image": image,
            "hostname": n,
            "init": True,
            "cap_add": ["NET_ADMIN"],
            "environment": {"PAMDI_NODE_CONFIG": f"{CONFIG_MOUNT}/nodes/{n}.json", **agent_env(threads),
                            "PYTHONUNBUFFERED": "1"},
            "volumes": [f"./pamdi:{CONFIG_MOUNT}:ro", f"./traces:{TRACE_MOUNT}",
                        *([] if keys_dir is None else [f"./keys/nodes/{n}:{KEYS_MOUNT}:ro"])],
            "networks": networks,
            "labels": {**labels, "pamdi.node": n},
            "stop_grace_period": "10s",
            # Healthy once the agent listens (the node shaped its links before starting it): the
            # coordinator starts only then, and `docker compose ps` shows which node is not up.
            "healthcheck": {"test": ["CMD", "python3", "-c", AGENT_HEALTH.format(port=AGENT_PORT)],
                            "interval": "1s", "timeout": "3s", "retries": 120, "start_period": "5s"},
        }
        if cpu_quota and cpus and device_time == "quota":
            # The netns backend's quota and short period (``netem.cgroups.quota_us``), not `cpus:`,
            # which keeps Docker's 100 ms period.
            service["cpu_quota"], service["cpu_period"] = quota_us(float(cpus))
        services[_service_name(n)] = service

    endpoints = {
        n: {"control": f"tcp://{control_ip[n]}:{AGENT_PORT}",
            "data": {k: f"tcp://{link_of(n, k).address(n)}:{AGENT_PORT}" for k in neighbours[n]}}
        for n in names
    }
    project = compose_project_name(spec.name)
    run_job = {
        "spec": f"{CONFIG_MOUNT}/spec.yaml",
        "run_dir": TRACE_MOUNT,
        "run_id": run_id,
        "endpoints": endpoints,
        "policies": run_policies,
        "task_timeout_s": task_timeout_s,
        "run_timeout_s": run_timeout_s,
        "keep_outputs": keep_outputs,
        "device_time": device_time,
        "time_stretch": k,
        # Delay-only links whose delay the receiving agents apply (no netem in this kernel: the
        # node containers then shape only the rate), as the netns and docker backends do.
        "agent_delayed_links": sorted([list(lk.key) for lk in links if lk.delay_ms > 0 and lk.loss == 0
                                       and not _host_has_netem()]),
        "profiles": choice.as_dict(),
        "keys": None if keys_dir is None else KEYS_MOUNT,
        "project": project,
        # Where the coordinator starts the nodes' scenario clock (none: no scenario link).
        "scenario_clock": SCENARIO_CLOCK if schedules else None,
    }
    (out_dir / "pamdi" / "run.json").write_text(json.dumps(run_job, indent=2) + "\n")
    (out_dir / "pamdi" / "spec.yaml").write_text(
        yaml.safe_dump(nominal.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    services[COORDINATOR] = {
        "image": image,
        "init": True,
        "entrypoint": ["pamdi", "compose-run", f"{CONFIG_MOUNT}/run.json"],
        "depends_on": {n: {"condition": "service_healthy"} for n in names},
        "volumes": [f"./pamdi:{CONFIG_MOUNT}:ro", f"./traces:{TRACE_MOUNT}",
                    *([] if keys_dir is None else [f"./keys/{COORDINATOR}:{KEYS_MOUNT}:ro"])],
        "networks": {"ctl": {"ipv4_address": str(control.network_address + 2)}},
        "labels": {**labels, "pamdi.node": COORDINATOR},
    }
    networks_yaml: dict[str, Any] = {
        "ctl": _network(control, labels),
        **{net.name: _network(net.subnet, labels) for net in nets.values()},
    }
    # The Compose Specification: no `version:` (obsolete; Compose v2 warns about it). The project
    # name goes in .env, which Compose v2 and the v1 still packaged by Debian 12 both read (a
    # top-level `name:` is v2 only: v1 refuses the file).
    compose = {"services": services, "networks": networks_yaml}
    compose_file = out_dir / "docker-compose.yml"
    header = (f"# pamdi experiment {spec.name!r}, rendered by `pamdi compose` (project {project!r}, see .env).\n"
              f"# Run:    {COMPOSE_UP}   (Compose v1: docker-compose ...)\n"
              "# Clean:  docker compose down\n")
    compose_file.write_text(header + yaml.safe_dump(compose, sort_keys=False))
    (out_dir / ".env").write_text(f"COMPOSE_PROJECT_NAME={project}\n")
    return ComposeProject(out_dir, compose_file, run_id, tuple(services), tuple(networks_yaml))


def _host_has_netem() -> bool:
    """Whether this host's kernel has netem (the node containers share it); without root to probe,
    assume not (the agents then apply delays themselves)."""
    import os

    if os.geteuid() != 0 and os.environ.get("PAMDI_NETEM") not in ("0", "1"):
        return False
    try:
        from orchestrator.netem.tc import netem_available

        return netem_available()
    except Exception:
        return False


def _network(subnet: Any, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "driver": "bridge",
        # No route out of the experiment: traffic stays between its containers and this host.
        "internal": True,
        "ipam": {"config": [{"subnet": str(subnet), "gateway": str(next(subnet.hosts()))}]},
        "labels": dict(labels),
    }


# ----------------------------------------------------------------------------- the coordinator
def _render_keys(root: Path, nodes: Sequence[str]) -> Path:
    """The run's keys for a compose project: one folder per container, each only what it needs."""
    import shutil

    from orchestrator.keys import generate_run_keys, node_key_folder

    shutil.rmtree(root, ignore_errors=True)  # a re-render makes new keys
    all_keys = generate_run_keys(root / "all", nodes)
    for n in nodes:
        node_key_folder(all_keys, n, root / "nodes" / n)
    coord = root / COORDINATOR
    shutil.copytree(all_keys / "public", coord / "public")
    (coord / "private").mkdir(mode=0o700)
    shutil.copy2(all_keys / "private" / "orchestrator.key_secret", coord / "private")
    shutil.rmtree(all_keys)  # every secret now lives only where it is used
    return root


def run_from_config(path: Path) -> dict[str, Any]:
    """What ``pamdi compose-run`` does inside the coordinator container: the one experiment
    lifecycle (``run_experiment``: manifest, runner, and the report where the image has pandas and
    matplotlib; else ``pamdi report traces/`` on the host writes it)."""
    import importlib.util

    from orchestrator.experiment import run_experiment
    from orchestrator.runner import RunOptions
    from orchestrator.spec import load_spec

    job = json.loads(Path(path).read_text())
    spec = load_spec(Path(job["spec"]), check_files=False)  # checked where it was written; the
    # container lacks the user's own scenarios
    keys = job.get("keys")
    opts = RunOptions(policies=job["policies"], curve=keys is not None, keys_dir=keys,
                      keep_outputs=bool(job.get("keep_outputs")),
                      device_time=job.get("device_time"), time_stretch=job.get("time_stretch"),
                      task_timeout_s=float(job.get("task_timeout_s", 60.0)), run_timeout_s=job.get("run_timeout_s"))

    can_report = all(importlib.util.find_spec(m) is not None for m in ("pandas", "pyarrow", "matplotlib"))
    backend = StaticBackend(job["endpoints"], job.get("agent_delayed_links", ()),
                            scenario_clock=job.get("scenario_clock"))
    exp = run_experiment(spec, backend,
                         Path(job["run_dir"]), opts, write_report=can_report,
                         manifest_extra={"compose": {"project": job.get("project")}})
    if opts.keep_outputs:
        import numpy as np

        outputs = {r.policy: {k: np.asarray(v).tolist() for k, v in r.outputs.items()} for r in exp.runner.results}
        (Path(job["run_dir"]) / "outputs.json").write_text(json.dumps(outputs) + "\n")
    if exp.interrupted:
        raise KeyboardInterrupt
    return exp.summary or {}
