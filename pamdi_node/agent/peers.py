"""What an agent knows about its neighbours (from beacons) and how it turns that into a WorldView.

The simulator builds its ``WorldView`` from simulated state; the agent builds the same structure from
the last beacon of every neighbour, so the shared policy code sees the same kind of facts in both.
A neighbour whose last beacon is older than ``dead_after`` seconds is marked ``alive=False`` (and the
agent also filters it out of the candidates); when its beacons resume it is used again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pamdi_node.agent.config import RunConfig
from pamdi_node.policies.types import PeerView, SourceView, WorldView


@dataclass
class PeerState:
    name: str
    rate_bps: float
    delay_s: float
    speed: float
    queue_s: float = 0.0
    by_weight: tuple[tuple[float, float], ...] = ()
    residual_s: float = 0.0
    success: float = 1.0  # 1 - configured link loss
    link_free_at: float = 0.0  # when the link to it has sent what this node queued on it (estimate)
    last_beacon: float | None = None  # local clock
    beacons: int = 0
    deaths: int = 0
    was_alive: bool = False


class PeerTable:
    def __init__(self, cfg: RunConfig, now: float) -> None:
        self.cfg = cfg
        self.here = cfg.node
        self.started = now
        self.peers: dict[str, PeerState] = {
            name: PeerState(name, p.rate_bps, p.delay_s, speed=cfg.speeds.get(name, 1.0), success=1.0 - p.loss)
            for name, p in cfg.peers.items()
        }
        # The whole graph's directed links (goodput, delay), for planners that cost other hops.
        self.links: dict[tuple[str, str], tuple[float, float]] = {
            (a, b): (rate, delay) for a, b, rate, delay in cfg.links
        }
        self.sources: dict[str, SourceView] = {s.name: s.view() for s in cfg.sources}
        self.graph = {k: tuple(v) for k, v in cfg.graph.items()}
        self.dead_after = cfg.dead_after  # the config is frozen: read the rule once
        # Nominal speeds of the nodes that are neither this one nor a peer (world() adds the rest).
        self._far_speeds = {n: v for n, v in cfg.speeds.items() if n != self.here and n not in self.peers}
        # The last view built of each peer, reused while nothing in it changed (world() runs at
        # every decision; a beacon arrives only every beacon period).
        self._views: dict[str, tuple[tuple[Any, ...], PeerView]] = {}

    def on_beacon(self, name: str, body: dict, now: float) -> bool:
        """Record a beacon; returns True if the peer (re)joined."""
        p = self.peers.get(name)
        if p is None:
            return False
        p.speed, p.queue_s, p.last_beacon = body["speed"], body["queue_s"], now
        p.residual_s = float(body.get("residual_s", 0.0))
        try:
            p.by_weight = tuple((float(w), float(s)) for w, s in body.get("by_weight", ()))
        except (TypeError, ValueError):
            p.by_weight = ()  # malformed detail: fall back to the total queue
        p.beacons += 1
        rejoined = not p.was_alive
        p.was_alive = True
        return rejoined

    def heard_from(self, name: str, now: float) -> None:
        """Any message from a peer proves it is up (a restarted peer may send work before its first beacon)."""
        p = self.peers.get(name)
        if p is not None and (p.last_beacon is None or p.last_beacon < now):
            if p.last_beacon is None:
                p.was_alive = True
            p.last_beacon = now

    def on_sent(self, name: str, nbytes: int, now: float) -> None:
        """Account ``nbytes`` queued on the link to ``name`` (sender-side link backlog)."""
        p = self.peers.get(name)
        if p is not None and p.rate_bps > 0:
            p.link_free_at = max(now, p.link_free_at) + nbytes * 8.0 / p.rate_bps

    def alive(self, name: str, now: float) -> bool:
        p = self.peers.get(name)
        return p is not None and p.last_beacon is not None and now - p.last_beacon <= self.dead_after

    def newly_dead(self, now: float) -> list[str]:
        """Peers that were alive and have now missed their beacons (reported once per death)."""
        out = []
        for p in self.peers.values():
            if p.was_alive and not self.alive(p.name, now):
                p.was_alive = False
                p.deaths += 1
                out.append(p.name)
        return out

    def world(
        self,
        now: float,
        own_speed: float,
        own_queue: tuple[Any, ...],
        exclude: frozenset[str] = frozenset(),
    ) -> WorldView:
        """``own_queue``: (total s, by weight, residual s[, waiting]) as ``Executor.queue_detail``
        gives it; the self view is then what the simulator's ``_self_view`` builds."""
        q, by_weight, residual, *rest = own_queue
        waiting = tuple(rest[0]) if rest else ()
        here = self.here
        views = {here: PeerView(here, own_speed, q, math.inf, 0.0, True, 1.0, by_weight, residual,
                                waiting=waiting)}
        speeds = {here: own_speed}
        dead_after = self.dead_after
        cache = self._views
        for name, p in self.peers.items():
            alive = p.last_beacon is not None and now - p.last_beacon <= dead_after and name not in exclude
            backlog = p.link_free_at - now
            if not backlog > 0.0:
                backlog = 0.0
            key = (p.speed, p.queue_s, p.rate_bps, p.delay_s, alive, p.success, p.by_weight, p.residual_s, backlog)
            hit = cache.get(name)
            if hit is not None and hit[0] == key:
                view = hit[1]
            else:
                view = PeerView(name, p.speed, p.queue_s, p.rate_bps, p.delay_s, alive,
                                p.success if alive else 0.0, p.by_weight, p.residual_s, backlog)
                cache[name] = (key, view)
            views[name] = view
            speeds[name] = p.speed
        speeds.update(self._far_speeds)
        return WorldView(
            here=here, now_s=now, peers=views, sources=self.sources, speeds=speeds, neighbours=self.graph,
            links=self.links,
        )

    def summary(self, now: float) -> dict[str, dict[str, float | int | bool]]:
        return {
            p.name: {"alive": self.alive(p.name, now), "speed": p.speed, "queue_s": p.queue_s,
                     "beacons": p.beacons, "deaths": p.deaths}
            for p in self.peers.values()
        }
