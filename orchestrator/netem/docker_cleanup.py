"""Docker side of ``pamdi cleanup``: remove the containers and networks that dead runs left.

Everything the docker backend and compose create carries ``PROJECT_LABEL`` and its run's
``RUN_LABEL``; a docker backend run also carries its orchestrator's pid and start time, so a run
whose owner is alive is left alone (a reused pid is not the owner). Beside ``cleanup.py``, which
does the same for namespaces, veths, qdiscs and cgroups.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

log = logging.getLogger("orchestrator.backends.docker")

PROJECT_LABEL = "pamdi.project"
RUN_LABEL = "pamdi.run"
OWNER_LABEL = "pamdi.owner-pid"
OWNER_START_LABEL = "pamdi.owner-start"  # the owner's start time: a reused pid is not the owner


def remove_labelled(cli: Any, label_filter: str, timeout_s: float = 60.0) -> list[str]:
    """Remove every container, then every network, matching a label filter; returns their names.

    Under load the engine can time out or refuse (a network stays busy while a container is still
    being torn down), so this goes round again until nothing matching is left, or warns at the
    deadline so that ``pamdi cleanup`` can finish the job.
    """
    removed: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        containers = cli.containers.list(all=True, filters={"label": label_filter})
        for c in containers:
            with contextlib.suppress(Exception):
                c.remove(force=True)
                removed.append(f"container {c.name}")
        networks = cli.networks.list(filters={"label": label_filter})
        for n in networks:
            with contextlib.suppress(Exception):
                n.remove()
                removed.append(f"network {n.name}")
        if not containers and not networks:
            return removed
        if time.monotonic() > deadline:
            left = [c.name for c in containers] + [n.name for n in networks]
            log.warning("docker: could not remove %s; run `pamdi cleanup`", ", ".join(left))
            return removed
        time.sleep(0.5)


def _owner_alive(pid: str, start: str | None = None) -> bool:
    from orchestrator.netem.names import owner_alive

    try:
        return owner_alive(int(pid), int(start) if start and start.isdigit() else None)
    except ValueError:
        return False


def docker_leftovers(cli: Any = None) -> dict[str, list[str]]:
    """Every container and network of the project that exists now (tests, ``cleanup --dry-run``).

    Empty lists when no Docker engine is reachable (then nothing of the project can exist there).
    """
    if cli is None:
        from orchestrator.image.dockerutil import DockerError, client

        try:
            cli = client()
        except DockerError:
            return {"containers": [], "networks": []}
    return {
        "containers": [c.name for c in cli.containers.list(all=True, filters={"label": PROJECT_LABEL})],
        "networks": [n.name for n in cli.networks.list(filters={"label": PROJECT_LABEL})],
    }


def cleanup_docker(all_runs: bool = False, cli: Any = None, spare_own: bool = False) -> dict[str, list[str]]:
    """Remove the containers and networks of dead runs (every run with ``all_runs``); ``spare_own``:
    leave this process's own runs alone too (the sweep a new run makes before it starts).

    A run whose orchestrator process is alive is left alone, so cleaning up never breaks an
    experiment running beside it; so are docker-compose projects (no owner process). Returns
    ``{"removed": [...], "live_runs_left_alone": [...]}``; with no Docker engine reachable there is
    nothing to clean and both lists are empty.
    """
    if cli is None:
        from orchestrator.image.dockerutil import DockerError, client

        try:
            cli = client()
        except DockerError:
            return {"removed": [], "live_runs_left_alone": []}
    runs: dict[str, tuple[str | None, str | None]] = {}
    for obj in [*cli.containers.list(all=True, filters={"label": PROJECT_LABEL}),
                *cli.networks.list(filters={"label": PROJECT_LABEL})]:
        labels = obj.attrs.get("Config", {}).get("Labels") if hasattr(obj, "status") else obj.attrs.get("Labels")
        labels = labels or {}
        # No owner label: a docker-compose project, which its user manages (docker-compose down).
        runs.setdefault(labels.get(RUN_LABEL, ""), (labels.get(OWNER_LABEL), labels.get(OWNER_START_LABEL)))
    removed: list[str] = []
    skipped: list[str] = []
    for run, (owner, start) in sorted(runs.items()):
        own = owner == str(os.getpid())
        if not all_runs and (owner is None or (own and spare_own) or (not own and _owner_alive(owner, start))):
            skipped.append(run)
            continue
        flt = f"{RUN_LABEL}={run}" if run else PROJECT_LABEL
        removed += remove_labelled(cli, flt)
    return {"removed": removed, "live_runs_left_alone": skipped}
