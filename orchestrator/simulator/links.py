"""The simulated network: link state over time (schedules, token bucket), control-message delays,
transfers and the routes results take."""

from __future__ import annotations

from typing import Any

from orchestrator.simulator.inputs import (
    _BURST,
    _DELAY,
    _EST_FREE,
    _FREE,
    _LAST_ARRIVAL,
    _RATE,
    _SCHED,
    _SUCCESS,
    _TOK_T,
    _TOKENS,
    CTRL_BYTES,
    LinkSchedule,
)
from pamdi_node.policies.graph import shortest_paths


class LinkModel:
    """Part of ``Simulator`` (``engine.py``), which it is mixed into: it uses the simulator's state."""

    def link_state(self, a: str, b: str, t: float | None = None) -> tuple[float, float, float]:
        """(goodput bps, one-way delay s, loss) of the physical link a->b at simulated time ``t``
        (default: now). On a scenario link this is the scenario's point then, not the view's."""
        link = self.links[(a, b)]
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            return link[_RATE], link[_DELAY], 1.0 - link[_SUCCESS]
        return sched.state((self.now if t is None else t) + self.opt.scenario_offset_s)

    def _phys(self, link: list[Any]) -> tuple[float, float]:
        """(goodput, delay) of a directed link right now."""
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            return link[_RATE], link[_DELAY]
        g, d, _ = sched.state(self.now + self.opt.scenario_offset_s)
        return g, d

    def _ctrl_delay(self, a: str, b: str) -> float:
        """Seconds until a control message (RTC, CTC, DENY) sent now from a reaches b."""
        return self._small_arrival(a, b, CTRL_BYTES) - self.now

    def _acknowledge(self, receiver: str, sender: str) -> None:
        """The receiver's ACK of a task or result hop (the agents send one for each). On a constant
        link it changes nothing; on a jittered one it takes a draw, and what the receiver sends back
        next (the result, after its compute) is released in order behind it, as in the delay line."""
        if self.jitter and (receiver, sender) in self.jitter:
            self._small_arrival(receiver, sender, CTRL_BYTES)

    def _small_arrival(self, a: str, b: str, nbytes: int) -> float:
        """When a small message (control, beacon) sent now from a reaches b. It shares the link with
        the activations and results a sends b (one connection, one shaper queue), so it waits behind
        whatever is queued there, as the agents' messages do; its own bytes are left out of the
        link's occupancy and of the sender's backlog estimate (the agents' estimate counts data
        only, and a few hundred bytes do not move the data behind them noticeably)."""
        link = self.links[(a, b)]
        start = self.now if self.now > link[_FREE] else link[_FREE]
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            jittered = self.jitter.get((a, b)) if self.jitter else None
            if jittered is not None:  # in order behind the data ahead of it, as in the delay line
                return jittered.due(start + nbytes * 8.0 / link[_RATE])
            return start + nbytes * 8.0 / link[_RATE] + link[_DELAY]
        off = self.opt.scenario_offset_s
        _, arrival = sched.transmit(start + off, nbytes * 8.0)
        arrival -= off
        return arrival if arrival > link[_LAST_ARRIVAL] else link[_LAST_ARRIVAL]

    def _send_bytes(self, a: str, b: str, nbytes: int) -> float:
        """Queue ``nbytes`` on link a->b; return the arrival time at b."""
        link = self.links[(a, b)]
        start = self.now if self.now > link[2] else link[2]
        bits = nbytes * 8.0
        est = link[_EST_FREE]  # the sender's estimate, as the agents keep it: configured goodput, no bucket
        link[_EST_FREE] = (self.now if self.now > est else est) + bits / link[_RATE]
        sched: LinkSchedule | None = link[_SCHED]
        if sched is None:
            burst = link[_BURST]
            if burst > 0:  # the shaper's bucket refills while the link idles; what it holds goes at once
                avail = min(burst, link[_TOKENS] + (start - link[_TOK_T]) * link[_RATE])
                if bits <= avail:
                    link[_TOKENS], bits = avail - bits, 0.0
                else:
                    link[_TOKENS], bits = 0.0, bits - avail
            link[2] = start + bits / link[0]
            link[_TOK_T] = link[2]
            jittered = self.jitter.get((a, b)) if self.jitter else None
            return link[2] + link[1] if jittered is None else jittered.due(link[2])
        off = self.opt.scenario_offset_s
        done, arrival = sched.transmit(start + off, bits)
        link[_FREE] = done - off
        arrival -= off
        if arrival < link[_LAST_ARRIVAL]:
            arrival = link[_LAST_ARRIVAL]
        link[_LAST_ARRIVAL] = arrival
        return arrival

    def _route(self, src: str, dst: str, nbytes: int) -> tuple[str, ...]:
        key = (dst, nbytes)
        table = self._routes.get(key)
        if table is None:
            def cost(u: str, v: str) -> float:
                # Paths are computed from the destination backwards, on the configured links
                # (what the workers know; routes do not follow a scenario's changes).
                link = self.links[(v, u)]
                return nbytes * 8.0 / link[0] + link[1]
            table = shortest_paths(dst, self.neighbours, cost)
            self._routes[key] = table
        path = table.get(src)
        if path is None:
            return ()
        return tuple(reversed(path))
