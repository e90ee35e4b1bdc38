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
        return PeerView(name=node.name, speed=node.speed, queue_s=d.total_s, rate_bps=math.inf,
                        delay_s=0.0, alive=node.alive, success=1.0, queue_by_weight=d.by_weight,
                        residual_s=d.residual_s, waiting=d.waiting)

    def _peer_view(self, here: str, other: str) -> PeerView:
        link = self.links[(here, other)]
        node = self.nodes[other]
        # Beacons travel the physical link, behind the data queued on it; the view carries the
        # configured link (module doc).
        arrivals = node.snap_arrivals[here]
        idx = bisect.bisect_right(arrivals, self.now) - 1
        if idx < 0:
            idx = 0
        alive = (self.now - arrivals[idx]) <= self.dead_after_s
        key = (here, other)
        cached = self._peer_cache.get(key)
        # What the holder believes is still queued on the link: the agents' estimate (bytes sent at
        # the configured goodput; ``PeerTable.on_sent``), blind to the shaper's bucket and to scenarios.
        free_at = link[_EST_FREE]
        backlog = free_at - self.now if free_at > self.now else 0.0
        if cached is not None and cached[0] == idx and cached[1].alive == alive and cached[1].link_backlog_s == backlog:
            return cached[1]
        q, residual, bw = node.snaps[idx]
        view = PeerView(name=other, speed=node.speed, queue_s=q, rate_bps=link[_RATE], delay_s=link[_DELAY],
                        alive=alive, success=link[_SUCCESS], queue_by_weight=bw, residual_s=residual,
                        link_backlog_s=backlog)
        self._peer_cache[key] = (idx, view)
        return view

    def world(self, here: str) -> WorldView:
        node = self.nodes[here]
        peers = {here: self._self_view(node)}
        for nb in self.neighbours[here]:
            peers[nb] = self._peer_view(here, nb)
        return WorldView(here=here, now_s=self.now, peers=peers, sources=self.sources, speeds=self.speeds,
                         neighbours=self.neighbours, links=self.link_table)

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
