"""GPU nodes in the model: the speed of a node whose agent runs its blocks on a GPU.

The simulator, the policies' views and the ``profile`` device-time model all give a node one speed
that scales the run's reference profile (a block range takes ``profiled time / speed``). A node with
``device_type: cuda`` and no explicit ``speed`` (or named ``device``) is given the speed its GPU
profile implies: the reference profile's total time over the GPU profile's, summed over the
spec's models (so a spec with one model gets exactly that model's ratio). GPU profiles are
``<model>_b<batch>_cuda.json`` files (``pamdi profile MODEL --device cuda --out FOLDER/``) in the
spec's ``profiles`` folder. What this does not model: a GPU gains more on some blocks (wide
convolutions) than on others (small ones, launch-bound), so per-block times on the GPU node are
off by that shape difference even where the total is right; ``per_model`` in the manifest shows
how far the models' ratios spread. A node given a ``speed`` keeps it (say so to override).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.spec import ExperimentSpec, Node
from pamdi_node.models.profile import ModelProfile


def is_gpu(node: Node) -> bool:
    return node.device_type.startswith("cuda")


def needs_gpu_profile(node: Node) -> bool:
    """A GPU node whose speed nobody gave: it is modelled from its GPU profile."""
    return is_gpu(node) and "speed" not in node.model_fields_set and node.device is None


def profile_folder(spec: ExperimentSpec, base_dir: str | Path | None) -> Path | None:
    if not spec.profiles:
        return None
    folder = Path(spec.profiles)
    return folder if folder.is_absolute() or base_dir is None else Path(base_dir) / folder


def check_gpu_nodes(spec: ExperimentSpec, backend: str, gpu_check: str) -> None:
    """Refuse, in one line naming the node, GPU nodes the backend cannot give a GPU: ``gpu_check``
    "none" (no GPU agents at all), "host" (the agents run here: this machine's torch must see the
    GPU); "remote" leaves the check to the agent on the device."""
    gpu = [n for n in spec.nodes if is_gpu(n)]
    if not gpu:
        return
    if gpu_check == "none":
        raise ValueError(f"nodes.{gpu[0].name}: device_type {gpu[0].device_type}: the {backend} backend "
                         "runs no GPU agents (its node image carries a CPU-only torch); use local or netns on a "
                         "GPU host, or Colosseum")
    if gpu_check == "host":
        from pamdi_node.models.device import check_device

        for n in gpu:
            try:
                check_device(n.device_type)
            except ValueError as err:
                raise ValueError(f"nodes.{n.name}: device_type {n.device_type}: {err}") from None


def resolve_gpu_speeds(spec: ExperimentSpec, profiles: Mapping[str, ModelProfile],
                       base_dir: str | Path | None = None) -> tuple[ExperimentSpec, dict[str, Any]]:
    """``spec`` with each GPU node's speed set from its GPU profile, and what was used (for the
    manifest). ``profiles``: the run's reference profile per source. A ValueError in one line names
    the node and the missing profile."""
    todo = [n for n in spec.nodes if needs_gpu_profile(n)]
    if not todo:
        return spec, {}
    from pamdi_node.models.profile import load_profile_from

    folder = profile_folder(spec, base_dir)
    if folder is None:
        raise ValueError(
            f"nodes.{todo[0].name}: device_type {todo[0].device_type} without a speed is modelled from a GPU "
            "profile: set the spec's `profiles:` to a folder holding <model>_b<batch>_cuda.json (measured with "
            "`pamdi profile MODEL --device cuda --out FOLDER/` on that GPU), or give the node a speed")
    ref_total = gpu_total = 0.0
    per_model: dict[str, dict[str, Any]] = {}
    for src in spec.sources:
        key = f"{src.model}_b{src.batch}"
        if key in per_model:
            continue
        try:
            gpu = load_profile_from(folder, src.model, src.batch, device="cuda")
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"nodes.{todo[0].name}: device_type {todo[0].device_type}: {err}") from None
        ref = profiles[src.name]
        r, g = ref.total_time_s, gpu.total_time_s
        if g <= 0:
            raise ValueError(f"nodes.{todo[0].name}: GPU profile of {src.model} has no positive timings")
        ref_total, gpu_total = ref_total + r, gpu_total + g
        per_model[key] = {"reference_s": round(r, 6), "gpu_s": round(g, 6), "ratio": round(r / g, 4),
                          "gpu": gpu.host.get("gpu")}
    speed = ref_total / gpu_total
    nodes = tuple(n.model_copy(update={"speed": speed}) if needs_gpu_profile(n) else n for n in spec.nodes)
    info = {"speed": round(speed, 4), "nodes": [n.name for n in todo], "folder": str(folder),
            "per_model": per_model}
    return spec.model_copy(update={"nodes": nodes}), info
