"""The simulator's inputs and output: options, nodes, links (and their time-varying schedules),
sources, failures, the result; and the sizes of its control messages."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field

from pamdi_node.policies.types import (
    LINK_GOODPUT_FACTOR,
    SourceView,
)
from pamdi_node.records import TaskRecord

CTRL_BYTES = 64
BEACON_BYTES = 160  # a beacon on the wire: msgpack header with the per-weight queue, ZMTP and TCP/IP

# Directed link state (a list per direction, both sharing one LinkSchedule): configured goodput,
# configured delay, when the physical link has sent everything queued (free_at), configured
# success probability, the schedule (None = constant link), the sender's estimate of free_at at
# the configured rate, and the last arrival on that direction (FIFO delivery).
_RATE, _DELAY, _FREE, _SUCCESS, _SCHED, _EST_FREE, _LAST_ARRIVAL, _BURST, _TOKENS, _TOK_T = range(10)


class SimulationError(RuntimeError):
    """The simulation cannot go on (a policy returned an impossible placement, runaway time)."""


@dataclass(frozen=True)
class SimOptions:
    beacon_period_s: float = 0.1
    # Beacon periods without news before a neighbour counts as dead; None = the rule the agent uses
    # too (``base.dead_after_s``: periods plus a slack).
    dead_after: float | None = None
    rtc_window_s: float = 0.001  # receiver collects RTCs this long before granting one
    rtc_timeout_s: float = 0.5  # sender gives up waiting for CTC/DENY
    max_retries: int = 2
    max_sim_time_s: float = 1e7
    # Seconds a worker stays occupied after a partition before its boundary decision (module doc).
    decision_cost_s: float = 0.0
    # Seconds added once to every data/result transfer hop, on top of serialization + delay.
    message_cost_s: float = 0.0
    # Model the tbf token bucket the netns/docker backends shape links with, as in a run stretched
    # this many times (``orchestrator/timescale.py``); None = pure serialisation (real links).
    shaper_stretch: float | None = None
    # Scenario time at simulated time 0 (a scenario link's phase; see the module doc).
    scenario_offset_s: float = 0.0
    # Which draw of the beacon phases (the simulator's only randomness besides the seed's arrival
    # schedule): 0 = the seed's own draw; r > 0 = another draw for the same arrivals. Near saturation a
    # run's mean moves with the phases alone, so a prediction there is the mean over replicas
    # (``orchestrator.predict.predict_ensemble``).
    replica: int = 0


@dataclass(frozen=True)
class NodeConfig:
    name: str
    speed: float


@dataclass(frozen=True)
class LinkSchedule:
    """A link's parameters over time (a radio scenario's points): from ``t_s`` on, until the next
    point, the link runs at ``rate_bps`` (link-layer) with ``delay_s`` one-way and ``loss``; with
    ``period_s > 0`` the points repeat every period (``Scenario.at``: t mod period), else the last
    point stays. Times are scenario seconds."""

    name: str
    points: tuple[tuple[float, float, float, float], ...]  # (t_s, rate_bps, delay_s, loss)
    period_s: float = 0.0
    goodput_factor: float = LINK_GOODPUT_FACTOR
    _times: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _goodput: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times = tuple(float(p[0]) for p in self.points)
        if times:
            if times[0] != 0.0:
                raise SimulationError(f"scenario {self.name!r}: the first point must be at t_s = 0")
            if any(b <= a for a, b in itertools.pairwise(times)):
                raise SimulationError(f"scenario {self.name!r}: point times must increase strictly")
            if any(p[1] <= 0 for p in self.points):
                raise SimulationError(f"scenario {self.name!r}: rates must be positive")
            if self.period_s > 0 and self.period_s <= times[-1]:
                raise SimulationError(f"scenario {self.name!r}: the period must be longer than the last point's t_s")
        object.__setattr__(self, "_times", times)
        object.__setattr__(self, "_goodput", tuple(p[1] * self.goodput_factor for p in self.points))

    def index(self, t: float) -> int:
        """The point in force at scenario time ``t`` (the last one with ``t_s <= t``)."""
        if self.period_s > 0:
            t = t % self.period_s
        i = bisect.bisect_right(self._times, t) - 1
        return i if i > 0 else 0

    def state(self, t: float) -> tuple[float, float, float]:
        """(goodput bps, one-way delay s, loss) at scenario time ``t``."""
        i = self.index(t)
        return self._goodput[i], self.points[i][2], self.points[i][3]

    def transmit(self, start: float, bits: float) -> tuple[float, float]:
        """Serialize ``bits`` from scenario time ``start`` on, at the goodput in force at every
        instant; return (when the last bit has left, when the whole message has arrived): the
        latest of ``t + delay(t)`` at the last bit and just before every change it straddled."""
        times, goodput, points, period = self._times, self._goodput, self.points, self.period_s
        n = len(times)
        if period > 0:
            local = start % period
            k = math.floor((start - local) / period + 0.5)
        else:
            local, k = start, 0
        i = bisect.bisect_right(times, local) - 1
        if i < 0:
            i = 0
        s = start
        release = -math.inf
        while True:
            r = goodput[i]
            if i + 1 < n:
                seg_end = k * period + times[i + 1]
            elif period > 0:
                seg_end = (k + 1) * period
            else:
                seg_end = math.inf
            done = s + bits / r
            if done <= seg_end:
                arrival = done + points[i][2]
                return done, arrival if arrival > release else release
            if seg_end > s:
                bits -= (seg_end - s) * r
                edge = seg_end + points[i][2]  # the bits that left just before the change
                if edge > release:
                    release = edge
                s = seg_end
            i += 1
            if i == n:
                i, k = 0, k + 1


@dataclass(frozen=True)
class LinkConfig:
    rate_bps: float  # configured link-layer rate (what the agents are told)
    delay_s: float = 0.0
    loss: float = 0.0
    # Time-varying physical link (a radio scenario); None = the configured values throughout.
    schedule: LinkSchedule | None = None
    # Token bucket of the shaper that emulates the link (tbf's burst, ``netem/tc.burst_bytes``): an
    # idle link sends up to this many bytes at once. 0 = a pure serialisation queue (real links).
    burst_bytes: float = 0.0
    # Delay spread: each message waits delay_s ± jitter_s (uniform), in order (``pamdi_node.jitter``).
    jitter_s: float = 0.0


@dataclass(frozen=True)
class SimSource:
    view: SourceView
    samples: int
    interval_s: float
    arrival: str = "periodic"  # or "poisson"
    start_s: float = 0.0


@dataclass(frozen=True)
class FailureConfig:
    node: str
    at_s: float
    recover_after_s: float | None = None


@dataclass
class SimResult:
    records: list[TaskRecord]
    events: int
    wall_s: float
    end_s: float
    busy_s: dict[str, float] = field(default_factory=dict)
    # (node, start, end) of every job that ran to completion, in simulated seconds (no relays).
    compute: list[tuple[str, float, float]] = field(default_factory=list)
