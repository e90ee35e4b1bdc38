"""DDI baseline: data-distributed inference; the whole data item goes to one full-model worker.

At the source (block 0) the task is placed, whole, on the candidate (itself or a live neighbour,
every worker holding the full model) with the least estimated completion: input transfer + queued
seconds (last beacon) + full compute at its speed. FIFO queues, no handshake. Ties prefer the
source itself, then the smaller name. The result travels back to the source.
"""

from __future__ import annotations

from collections.abc import Sequence

from pamdi_node.policies.graph import transfer_s
from pamdi_node.policies.types import FifoBaseline, Placement, TaskView, WorldView


class DDIPolicy(FifoBaseline):
    name = "ddi"

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]:
        source = world.sources[task.source]
        n = source.num_blocks
        b = task.next_block
        if b >= n:
            return ()
        if b > 0:  # already started somewhere: finish where it is
            return (Placement(world.here, b, n, 0.0),)
        full = source.range_time_s(0, n)
        scored = []
        for name, peer in world.peers.items():
            if not peer.alive or peer.speed <= 0:
                continue
            comm = 0.0 if name == world.here else transfer_s(source.input_bytes, peer)
            scored.append((comm + peer.queue_s + full / peer.speed, 0 if name == world.here else 1, name))
        scored.sort()
        return tuple(Placement(name, 0, n, cost) for cost, _, name in scored)
