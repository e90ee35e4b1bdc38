"""Taking a run configuration: the checks before it replaces the current run, and the blocks it
needs (built off the I/O loop)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pamdi_node import wire
from pamdi_node.agent.config import RunConfig, parse_config


def accept_config(raw: Any, agent_name: str | None, applied: Mapping[str, None]) -> tuple[RunConfig, Any]:
    """The config and its policy, or ``wire.WireError`` naming what is wrong: not a valid config,
    meant for another node, a replay of one already applied (it would tear the run down in place and
    wipe its uncollected records), or a policy that cannot be built with its parameters."""
    try:
        cfg = parse_config(raw)
    except ValueError as err:
        raise wire.WireError(str(err)) from None
    if agent_name and cfg.node != agent_name:
        raise wire.WireError(f"bad config: node {cfg.node!r} but this agent is {agent_name!r}")
    if cfg.config_id in applied:
        raise wire.WireError(f"bad config: config_id {cfg.config_id!r} was applied already (a replay)")
    from pamdi_node.policies import get_policy

    try:
        policy = get_policy(cfg.policy, **cfg.policy_params)
    except Exception as err:
        raise wire.WireError(f"bad config: policy {cfg.policy!r}: {err}") from None
    return cfg, policy


def build_store(cfg: RunConfig, device: str) -> Any:
    """The blocks this node may run under ``cfg``, built on ``device`` and warmed up once (the first
    pass of a process allocates and picks kernels)."""
    from pamdi_node.agent.executor import BlockStore

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    store = BlockStore(cfg.seed, device, cfg.weights)
    store.prebuild(cfg.allowed_blocks())
    batches: dict[str, int] = {}
    for src in cfg.sources:
        batches[src.model] = max(batches.get(src.model, 1), src.batch)
    store.warm_up(cfg.allowed_blocks(), batches)
    return store
