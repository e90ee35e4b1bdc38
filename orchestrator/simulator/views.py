"""What a simulated node knows: its own queue, its peers as their last beacons said, the world view
its policy decides on, and the beacons themselves."""

from __future__ import annotations

import bisect
import math

from orchestrator.simulator.inputs import (
    _DELAY,
    _EST_FREE,
    _RATE,
    _SUCCESS,
    BEACON_BYTES,
)
from orchestrator.simulator.state import _live, _Node
from pamdi_node.policies.types import (
    PeerView,
    WorldView,
)
from pamdi_node.worker import (
    QueueDetail,
    with_reservations,
)


class ViewModel:
    """Part of ``Simulator`` (``engine.py``), which it is mixed into: it uses the simulator's state."""

    def _detail(self, node: _Node, list_waiting: bool = False) -> QueueDetail:
        d = node.queue.detail(self.now, list_waiting, _live)
        return with_reservations(d, node.reserved.values(), list_waiting) if node.reserved else d

    def _self_view(self, node: _Node) -> PeerView:
        d = self._detail(node, self._list_waiting)
        return PeerView(node.name, node.speed, d.total_s, math.inf, 0.0, node.alive, 1.0, d.by_weight, d.residual_s,
                        0.0, d.waiting)

    def world(self, here: str) -> WorldView:
        """The view ``here`` decides on: itself, and each neighbour as its last beacon to arrive
        said. Beacons travel the physical link, behind the data queued on it (a busy link makes
        views stale); the view carries the configured link, and what the holder believes is still
        queued on it: the agents' estimate (bytes sent at the configured goodput;
        ``PeerTable.on_sent``), blind to the shaper's bucket and to scenarios. Inlined per
        neighbour: it runs at every decision, the simulator's hottest path."""
        node = self.nodes[here]
        now = self.now
        peers = {here: self._self_view(node)}
        nodes, links, cache, dead_after = self.nodes, self.links, self._peer_cache, self.dead_after_s
        bisect_right, est_free = bisect.bisect_right, _EST_FREE
        for nb in self.neighbours[here]:
            other = nodes[nb]
            arrivals = other.snap_arrivals[here]
            idx = bisect_right(arrivals, now) - 1
            if idx < 0:
                idx = 0
            alive = (now - arrivals[idx]) <= dead_after
            key = (here, nb)
            link = links[key]
            free_at = link[est_free]
            backlog = free_at - now if free_at > now else 0.0
            cached = cache.get(key)
            if cached is not None and cached[0] == idx:
                view = cached[1]
                if view.alive == alive and view.link_backlog_s == backlog:
                    peers[nb] = view
                    continue
            q, residual, bw = other.snaps[idx]
            view = PeerView(nb, other.speed, q, link[_RATE], link[_DELAY], alive, link[_SUCCESS], bw, residual, backlog)
            cache[key] = (idx, view)
            peers[nb] = view
        return WorldView(here, now, peers, self.sources, self.speeds, self.neighbours, self.link_table)

    def _beacon(self, node: _Node) -> None:
        if not node.alive:
            return
        node.snap_times.append(self.now)
        d = self._detail(node)
        node.snaps.append((d.total_s, d.residual_s, d.by_weight))
        # In band: a beacon waits on each link behind the activations and results queued there (the
        # agents send it on their one connection per peer), so a busy link makes views stale.
        for nb, arrivals in node.snap_arrivals.items():
            arrivals.append(self._small_arrival(node.name, nb, BEACON_BYTES))
        if self.outstanding > 0 or self._pending_arrivals > 0:
            self.at(self.now + self.opt.beacon_period_s, self._beacon, node)

    # ------------------------------------------------------------------ decisions
