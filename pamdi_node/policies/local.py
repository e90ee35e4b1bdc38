"""Local baseline: every source runs its whole model itself, FIFO, never offloads."""

from __future__ import annotations

from collections.abc import Sequence

from pamdi_node.policies.base import OffloadRequest, Placement, TaskView, WorldView


class LocalPolicy:
    name = "local"
    priority_queue = False
    handshake = False

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]:
        return (task.born_s,)

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]:
        source = world.sources[task.source]
        if task.next_block >= source.num_blocks:
            return ()
        return (Placement(world.here, task.next_block, source.num_blocks, 0.0),)

    def grant(self, requests: Sequence[OffloadRequest], world: WorldView) -> OffloadRequest | None:
        return min(requests, key=lambda r: (r.index, r.sender, r.task.task_id), default=None)
