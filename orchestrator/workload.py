"""The workload: the facts a spec implies, derived in one place for the simulator, the runner (the
agents' configurations), the allocator and compose.

- profiles: one per source (the spec's ``profiles`` folder, else the shipped reference);
- source views (``SourceView``: block times, sizes, partitions, priority), built from them;
- links as goodput (``orchestrator/goodput.py``: the spec's link-layer rate times
  ``LINK_GOODPUT_FACTOR``, the one place that applies it for views, configurations and the
  allocator; the simulator's engine models the shaper from the configured rate itself);
- each policy's parameters, ``pa-mdi-static`` with the allocator's plan (the only caller of
  ``allocate`` for it), and the policy object.

Node speeds come from the device table (``orchestrator/devices.py``: ``node_speed``).
``WorkloadError`` (a ``ValueError``) names the source or policy at fault in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.spec import ExperimentSpec
from pamdi_node.models.profile import ModelProfile
from pamdi_node.policies import get_policy, params_for
from pamdi_node.policies.partition import source_view_from_profile
from pamdi_node.policies.types import Policy, SourceView


class WorkloadError(ValueError):
    """A spec cannot be turned into a workload (no usable profile, a bad partition, a policy that
    cannot be built); the message names the source or policy."""


def policy_params(spec: ExperimentSpec, policy: str, views: Mapping[str, SourceView]) -> dict[str, Any]:
    """The parameters of ``policy`` from the spec (pa-mdi-static gets the allocator's plan)."""
    params: dict[str, Any] = params_for(policy, spec.policy_params)
    if policy == "pa-mdi-static" and "plan" not in params:
        from orchestrator.allocator import allocate

        params["plan"] = allocate(spec, views, rho_max=params.get("rho_max")).plan
    return params


def load_profiles(
    spec: ExperimentSpec,
    *,
    base_dir: str | Path | None = None,
    overrides: Mapping[str, ModelProfile] | None = None,
) -> dict[str, ModelProfile]:
    """One profile per source (keyed by source name): ``overrides`` by model name, else the spec's
    ``profiles`` folder (relative to ``base_dir``), else the shipped profiles. Profiles are per
    batch at one thread; node speeds scale them."""
    from pamdi_node.models.profile import load_profile_from, load_shipped_profile

    out: dict[str, ModelProfile] = {}
    for src in spec.sources:
        if overrides and src.model in overrides:
            out[src.name] = overrides[src.model]
            continue
        try:
            if spec.profiles:
                folder = Path(spec.profiles)
                if not folder.is_absolute() and base_dir is not None:
                    folder = Path(base_dir) / folder
                out[src.name] = load_profile_from(folder, src.model, src.batch, 1)
            else:
                out[src.name] = load_shipped_profile(src.model, src.batch, 1)
        except (FileNotFoundError, ValueError) as err:
            raise WorkloadError(f"sources.{src.name}: no usable profile for model {src.model!r}: {err}") from None
    return out


def source_views(spec: ExperimentSpec, profiles: Mapping[str, ModelProfile]) -> dict[str, SourceView]:
    views: dict[str, SourceView] = {}
    for src in spec.sources:
        try:
            views[src.name] = source_view_from_profile(
                src.name, src.node, profiles[src.name], priority=src.priority,
                accuracy=spec.accuracy_of(src.model), partitions=src.partitions,
            )
        except ValueError as err:
            raise WorkloadError(f"sources.{src.name}: {err}") from None
    return views


def make_policy(spec: ExperimentSpec, name: str, views: Mapping[str, SourceView]) -> Policy:
    """The policy object for ``name`` with the spec's ``policy_params``; ``pa-mdi-static`` gets
    its plan from the allocator."""
    try:
        return get_policy(name, **policy_params(spec, name, views))
    except WorkloadError:
        raise
    except (ValueError, RuntimeError) as err:
        raise WorkloadError(str(err)) from None
