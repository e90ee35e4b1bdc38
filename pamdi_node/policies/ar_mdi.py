"""AR-MDI baseline: one chain per source, layer shares proportional to worker speed.

Reconstructed from the AR-MDI abstract (single-source, "optimal model allocation", lightweight,
decentralised, resilient to delayed and failed workers; see ``reference/pa-mdi-paper.md`` §4):

- Chain: starting at the source, a greedy simple path that always steps to the fastest unvisited
  neighbour (ties by name), capped at ``chain_length`` workers (0 = as long as the walk goes).
  Every worker derives the same chain from the same (re-measured) speeds in ``WorldView.speeds``.
- Shares: the blocks are cut so that worker i's profiled time is proportional to its speed
  (``chain_shares``); there are no priorities and queues are FIFO, no handshake.
- Resilience: known-dead workers are left out of the chain; if the owner of the next range is dead
  or not a neighbour of the holder, the holder runs that range itself (absorbs its layers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from pamdi_node.policies.base import (
    OffloadRequest,
    Placement,
    SourceView,
    TaskView,
    WorldView,
    chain_shares,
    plan_chain,
)


@lru_cache(maxsize=4096)
def _plan(
    source: SourceView,
    speeds: tuple[tuple[str, float], ...],
    neighbours: tuple[tuple[str, tuple[str, ...]], ...],
    length: int,
    dead: frozenset[str],
) -> tuple[Placement, ...]:
    speed_map = dict(speeds)
    nbr_map: Mapping[str, tuple[str, ...]] = dict(neighbours)
    chain = plan_chain(source.node, speed_map, nbr_map, length=length, exclude=dead)
    return chain_shares(source, chain, speed_map)


class ARMDIPolicy:
    name = "ar-mdi"
    priority_queue = False
    handshake = False

    def __init__(self, *, chain_length: int = 0) -> None:
        if chain_length < 0:
            raise ValueError(f"chain_length must be >= 0, got {chain_length}")
        self.chain_length = int(chain_length)

    def plan(self, source: SourceView, world: WorldView) -> tuple[Placement, ...]:
        speeds = dict(world.speeds)
        for name, peer in world.peers.items():
            speeds[name] = peer.speed  # freshest measurement wins
        dead = frozenset(n for n, p in world.peers.items() if not p.alive and n != source.node)
        nbrs = tuple(sorted(world.neighbours.items()))
        return _plan(source, tuple(sorted(speeds.items())), nbrs, self.chain_length, dead)

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]:
        return (task.born_s,)

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]:
        source = world.sources[task.source]
        b = task.next_block
        if b >= source.num_blocks:
            return ()
        for step in self.plan(source, world):
            if step.start <= b < step.end:
                peer = world.peers.get(step.node)
                if step.node == world.here or (peer is not None and peer.alive):
                    return (Placement(step.node, b, step.end, step.index),)
                return (Placement(world.here, b, step.end, step.index),)
        return (Placement(world.here, b, source.num_blocks, 0.0),)

    def grant(self, requests: Sequence[OffloadRequest], world: WorldView) -> OffloadRequest | None:
        return min(requests, key=lambda r: (r.index, r.sender, r.task.task_id), default=None)
