"""Deployment backends and their registry: ``get_backend(name, **options)``.

Every backend implements ``base.Backend`` (up / set_link / link_stats / down; optionally
``base.SupportsFailures``: kill / restart) and is driven by ``orchestrator.runner.Runner``.
Backends register lazily (by module path) so that importing the registry stays cheap and a backend
whose module is missing or broken fails only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.backends.base import AgentEndpoint, Backend, RunContext, SupportsFailures, agent_argv

# name -> "module:Class": every backend lives in this package (compose's fixed endpoints and the
# Colosseum batch leader's discovered agents are backends too, built by their own commands).
BACKENDS: dict[str, str] = {
    "local": "orchestrator.backends.local:LocalBackend",
    "netns": "orchestrator.backends.netns:NetnsBackend",
    "docker": "orchestrator.backends.docker:DockerBackend",
    "colosseum": "orchestrator.backends.colosseum:ColosseumBackend",
    "ssh": "orchestrator.backends.ssh:SshBackend",
}


def get_backend(name: str, **options: Any) -> Backend:
    """A backend instance; raises ValueError naming the backend when it is unknown or unavailable."""
    target = BACKENDS.get(name)
    if target is None:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    module, _, cls = target.partition(":")
    try:
        mod = importlib.import_module(module)
        factory = getattr(mod, cls)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"backend {name!r} is not available: {err}") from None
    return factory(**options)


__all__ = ["BACKENDS", "AgentEndpoint", "Backend", "RunContext", "SupportsFailures", "agent_argv", "get_backend"]
