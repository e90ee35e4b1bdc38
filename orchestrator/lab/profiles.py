"""``pamdi lab profile``: ``pamdi profile`` on every host, harvested into one profile folder.

Each host measures the per-block median forward times of the model with its own Python and torch
(``pamdi_node.models.profiling.profile_model``, what ``pamdi profile`` runs), and the JSON comes back
over SSH. The folder then holds

- ``<host>/<model>_b<B>_t<T>.json``: every host's own profile;
- ``<model>_b<B>_t<T>.json``: the reference profile (the ``reference`` host's, default the first),
  the one a spec's ``profiles:`` names, which node speeds are relative to;
- ``lab-speeds.json``: per host, its speed relative to the reference (reference total / host total).

``spec_for_lab`` writes a copy of a spec whose ``profiles:`` is that folder and whose nodes carry the
speed of the host each runs on, so ``pamdi simulate`` predicts the lab run (``native`` device time:
the agents run at the devices' own speed) with the lab's own speeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.lab.inventory import Host, Inventory
from orchestrator.lab.session import LabSession
from orchestrator.sshlink import q

_PROFILE = (
    "import sys; from pamdi_node.models.profiling import profile_model; "
    "p = profile_model(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], warmup=int(sys.argv[5]), "
    "repeats=int(sys.argv[6])); print('PROFILE=' + p.model_dump_json())"
)


async def profile_host(session: LabSession, host: Host, model: str, *, batch: int, threads: int, device: str,
                       warmup: int, repeats: int) -> dict[str, Any]:
    envs = " ".join(f"{k}={q(v)}" for k, v in host.env.items())
    cmd = (f"env {envs} OMP_NUM_THREADS={threads} {q(host.python)} -c {q(_PROFILE)} {q(model)} {batch} {threads} "
           f"{q(device)} {warmup} {repeats}")
    res = await session.run(host.name, cmd, check=True, timeout=3600)
    for line in res.stdout.splitlines():
        if line.startswith("PROFILE="):
            return dict(json.loads(line[len("PROFILE="):]))
    raise session.error(host.name, "profile", f"no profile printed: {' '.join(res.stdout.split())[-200:]}")


async def profile_lab(inv: Inventory, out: Path, model: str, *, batch: int = 1, threads: int = 1,
                      device: str = "cpu", warmup: int = 3, repeats: int = 20, reference: str | None = None,
                      hosts: list[str] | None = None) -> dict[str, Any]:
    from pamdi_node.models.profile import ModelProfile, profile_filename

    names = hosts or [h.name for h in inv.hosts]
    ref = reference or names[0]
    if ref not in names:
        raise ValueError(f"--reference {ref}: not among the profiled hosts ({', '.join(names)})")
    async with LabSession(inv) as session:
        got = await session.each(lambda n: profile_host(session, inv.host(n), model, batch=batch, threads=threads,
                                                        device=device, warmup=warmup, repeats=repeats), names)
    fname = profile_filename(model, batch, threads, device)
    profiles = {n: ModelProfile.model_validate(p) for n, p in got.items()}
    for n, p in profiles.items():
        (out / n).mkdir(parents=True, exist_ok=True)
        p.save(out / n / fname)
    profiles[ref].save(out / fname)
    ref_total = profiles[ref].total_time_s
    speeds = {n: round(ref_total / p.total_time_s, 4) for n, p in profiles.items()}
    summary = {"model": model, "batch": batch, "threads": threads, "device": device, "reference": ref,
               "speeds": speeds, "total_s": {n: round(p.total_time_s, 6) for n, p in profiles.items()},
               "devices": {n: inv.host(n).device for n in names}}
    speeds_path = out / "lab-speeds.json"
    old = json.loads(speeds_path.read_text()) if speeds_path.exists() else {}
    old[fname.removesuffix(".json")] = summary
    speeds_path.write_text(json.dumps(old, indent=2) + "\n")
    return summary


def spec_for_lab(spec_path: Path, inv: Inventory, folder: Path, out: Path, key: str) -> dict[str, Any]:
    """A copy of the spec naming ``folder`` as its profiles, each node at its host's measured speed
    (``key``: the profile file's stem in ``lab-speeds.json``, e.g. ``resnet50_b1_t1``)."""
    import yaml

    from orchestrator.spec import load_spec
    from orchestrator.specfile import read_spec_yaml

    spec = load_spec(spec_path)
    data = read_spec_yaml(spec_path)
    speeds = json.loads((folder / "lab-speeds.json").read_text())[key]["speeds"]
    mapping = inv.assign([n.name for n in spec.nodes])
    for node in data["nodes"]:
        host = mapping[node["name"]].name
        if host not in speeds:
            raise ValueError(f"nodes.{node['name']}: host {host} has no profile in {folder} (run `pamdi lab profile`)")
        node["speed"] = speeds[host]
        node.pop("device", None)  # the measured speed replaces the nominal device's
    data["profiles"] = str(folder.resolve())
    data["device_time"] = "native"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    load_spec(out)  # the copy must be a valid spec
    return data
