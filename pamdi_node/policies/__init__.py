"""Per-task decision policies shared by the simulator and the real agent.

``get_policy(name, **params)`` returns a fresh policy object (see ``base.Policy``); unknown names
or parameters raise ``ValueError`` naming them. ``params_for(name, policy_params)`` picks, from a
spec's flat ``policy_params``, the keys meant for one policy: ``"pa-mdi.aging"`` is scoped to
pa-mdi, a plain ``"aging"`` goes to every policy that accepts it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pamdi_node.policies.ar_mdi import ARMDIPolicy
from pamdi_node.policies.ddi import DDIPolicy
from pamdi_node.policies.local import LocalPolicy
from pamdi_node.policies.ms_mdi import MSMDIPolicy
from pamdi_node.policies.pa_mdi import PAMDIPolicy
from pamdi_node.policies.static import StaticPolicy
from pamdi_node.policies.types import Policy

POLICIES: dict[str, Callable[..., Policy]] = {
    "local": LocalPolicy,
    "ar-mdi": ARMDIPolicy,
    "ms-mdi": MSMDIPolicy,
    "pa-mdi": PAMDIPolicy,
    "ddi": DDIPolicy,
    "pa-mdi-static": StaticPolicy,
}


def policy_parameters(name: str) -> tuple[str, ...]:
    """The keyword parameters policy ``name`` accepts."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    sig = inspect.signature(POLICIES[name])
    return tuple(p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def get_policy(name: str, **params: Any) -> Policy:
    """A fresh policy object; raises ``ValueError`` for an unknown name or parameter."""
    accepted = policy_parameters(name)
    for key in params:
        if key not in accepted:
            raise ValueError(
                f"policy {name!r} has no parameter {key!r}; it accepts: {', '.join(accepted) or 'none'}"
            )
    return POLICIES[name](**params)


def params_for(name: str, policy_params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of a spec's ``policy_params`` that applies to policy ``name``.

    Raises ``ValueError`` for a key no policy accepts (a typo) or a scoped key for a parameter
    the named policy does not have.
    """
    accepted = set(policy_parameters(name))
    every = {p for n in POLICIES for p in policy_parameters(n)}
    out: dict[str, Any] = {}
    scoped: dict[str, Any] = {}
    for key, value in policy_params.items():
        if "." in key:
            pol, _, param = key.partition(".")
            if pol not in POLICIES:
                raise ValueError(f"policy_params.{key}: unknown policy {pol!r}")
            if param not in policy_parameters(pol):
                raise ValueError(f"policy_params.{key}: policy {pol!r} has no parameter {param!r}")
            if pol == name:
                scoped[param] = value
        elif key not in every:
            raise ValueError(f"policy_params.{key}: no policy has this parameter")
        elif key in accepted:
            out[key] = value
    out.update(scoped)
    return out


__all__ = ["POLICIES", "Policy", "get_policy", "params_for", "policy_parameters"]
