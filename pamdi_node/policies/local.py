"""Local baseline: every source runs its whole model itself, FIFO, never offloads."""

from __future__ import annotations

from collections.abc import Sequence

from pamdi_node.policies.types import FifoBaseline, Placement, TaskView, WorldView


class LocalPolicy(FifoBaseline):
    name = "local"

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]:
        source = world.sources[task.source]
        if task.next_block >= source.num_blocks:
            return ()
        return (Placement(world.here, task.next_block, source.num_blocks, 0.0),)
