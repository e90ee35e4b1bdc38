"""The decision-policy interface shared by the simulator and the real agent.

A policy is pure, deterministic code over frozen views of the world: it never touches sockets,
clocks or torch. The simulator and the agent both build the same views (from simulated state or
from received beacons) and ask the same policy the same questions, so they make the same choices.

Questions a policy answers:

1. ``queue_key``: the order in which a worker serves the tasks waiting in its queue
   (FIFO for the baselines, priority-index order for PA-MDI). Smaller keys are served first.
2. ``rank``: when a task sits at a partition boundary on worker ``here``, the ordered list of
   candidate placements for the next block range (self or a neighbour), best first.
3. ``grant``: a receiver that got several offload requests (RTC) in one window chooses which one
   to clear (CTC); the rest are denied and their senders try their next candidate.

Units: times in seconds, sizes in bytes, rates in bits per second. ``speed`` is relative to the
host the profiles were measured on (2.0 = twice as fast), so a block range costs
``profile.range_time_s(a, b) / speed`` seconds on a worker.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pamdi_node.models.profile import ModelProfile


@dataclass(frozen=True)
class SourceView:
    """Static facts about one source, known to every worker from the run configuration."""

    name: str
    node: str
    model: str
    priority: float  # gamma_m
    accuracy: float  # alpha_m
    block_time_s: tuple[float, ...]  # profiled time per block on the reference host
    block_out_bytes: tuple[int, ...]  # activation bytes leaving each block
    input_bytes: int
    result_bytes: int
    # Partition boundaries: partition p runs blocks [bounds[p], bounds[p+1]).
    bounds: tuple[int, ...]

    @property
    def num_blocks(self) -> int:
        return len(self.block_time_s)

    def bytes_into(self, block: int) -> int:
        return self.input_bytes if block == 0 else self.block_out_bytes[block - 1]

    def range_time_s(self, start: int, end: int) -> float:
        return math.fsum(self.block_time_s[start:end])


@dataclass(frozen=True)
class TaskView:
    """One data item (or batch) of a source, at a partition boundary."""

    task_id: str
    source: str
    next_block: int  # first block not yet run
    born_s: float  # creation time at the source
    holder: str  # worker currently holding the activation


@dataclass(frozen=True)
class PeerView:
    """What worker ``here`` knows about a candidate worker (itself included).

    For a neighbour this comes from its last beacon; for ``here`` it is local state.
    """

    name: str
    speed: float  # relative to the profiled host
    # Seconds of work already committed there, at its own speed: what the tasks queued or in service
    # there still need to finish their models (a task that landed on a worker mostly stays).
    queue_s: float
    rate_bps: float  # link rate from here to it (math.inf for self)
    delay_s: float = 0.0  # one-way propagation delay from here (0 for self)
    alive: bool = True
    success: float = 1.0  # probability the hop and the worker succeed (1 - P_fail)
    # Queued seconds by task weight (gamma*alpha), excluding the job in service: lets a
    # priority-aware policy count only the work that would be served before its own task.
    # Empty = unknown: fall back to ``queue_s``.
    queue_by_weight: tuple[tuple[float, float], ...] = ()
    # Seconds left of the job in service (included in ``queue_s``; non-preemptive service).
    residual_s: float = 0.0
    # Seconds until the link from ``here`` to this peer has sent what ``here`` already queued on it
    # (sender-side knowledge, always fresh; 0 for self).
    link_backlog_s: float = 0.0
    # The worker's own queue task by task, ``(born_s, weight, seconds)`` for every task waiting
    # there (the task in service included, with what it needs after the current partition). Only
    # a worker's view of itself carries it (beacons do not): with it a policy can count exactly the
    # work its queue order serves before a given task. Empty = unknown.
    waiting: tuple[tuple[float, float, float], ...] = ()

    def queue_ahead_s(self, weight: float) -> float:
        """Seconds of queued work served before a task of ``weight`` under priority order.

        Work of equal or higher weight is ahead (equal weights are FIFO); the job in service is
        always ahead because service is not preempted. Computed as ``queue_s`` minus the queued
        work of lower weight, so that with a single weight class it is exactly ``queue_s`` (a
        priority-aware policy then sees the very numbers a priority-blind one sees).
        """
        if not self.queue_by_weight:
            return self.queue_s
        below = [s for w, s in self.queue_by_weight if w < weight]
        if not below:  # the common case for the top weight: nothing is served after it
            return self.queue_s
        lower = math.fsum(below)
        if lower <= 0.0:
            return self.queue_s
        return max(self.residual_s, self.queue_s - lower)


@dataclass(frozen=True)
class Placement:
    """Run blocks [start, end) of the task on ``node``; ``index`` is the policy's score (lower = better)."""

    node: str
    start: int
    end: int
    index: float


@dataclass(frozen=True)
class OffloadRequest:
    """An RTC: ``sender`` asks ``receiver`` to run [start, end) of ``task``."""

    task: TaskView
    sender: str
    receiver: str
    start: int
    end: int
    index: float
    priority: float
    # The sender's own best alternative (computing locally); a receiver that re-checks the
    # request with its fresh queue may deny when it would do worse than this.
    fallback_index: float = math.inf


@dataclass(frozen=True)
class WorldView:
    """Everything a worker may consult when deciding: itself, its live neighbours, the sources."""

    here: str
    now_s: float
    peers: Mapping[str, PeerView]  # includes ``here``
    sources: Mapping[str, SourceView]
    # Every node's relative speed as last known (for chain planners such as AR-MDI).
    speeds: Mapping[str, float] = field(default_factory=dict)
    # Adjacency of the whole graph, for policies that plan paths (AR-MDI chain, routing results back).
    neighbours: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Directed links of the whole graph as last known: (a, b) -> (goodput bps, one-way delay s), for
    # planners that cost moves between other workers (PA-MDI look-ahead, AR-MDI chain). Empty =
    # unknown: see ``link_estimate`` for the fallback.
    links: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    name: str
    priority_queue: bool  # serve queues by queue_key (True) or FIFO (False)
    handshake: bool  # use the RTC/CTC request/clear exchange before offloading

    def queue_key(self, task: TaskView, world: WorldView) -> tuple[float, ...]: ...

    def rank(self, task: TaskView, world: WorldView) -> Sequence[Placement]: ...

    def grant(self, requests: Sequence[OffloadRequest], world: WorldView) -> OffloadRequest | None: ...


def needs_handshake(policy: Policy, task: TaskView, world: WorldView) -> bool:
    """Whether offloading ``task`` goes through RTC/CTC: the policy's optional per-task
    ``needs_handshake(task, world)`` method when it has one, else its ``handshake`` flag."""
    fn = getattr(policy, "needs_handshake", None)
    return bool(fn(task, world)) if callable(fn) else bool(policy.handshake)


# ----------------------------------------------------------------------------------------------
# Shared pure helpers (used by the policies, the simulator, the allocator and the agent).

# Shaped TCP goodput is this fraction of the configured link-layer rate (measured here with
# htb/tbf; header overhead). Views carry goodput, so policies never apply it themselves.
LINK_GOODPUT_FACTOR = 0.956


# Liveness, the one rule for the simulator and the agent: a worker is dead (no longer a candidate;
# work handed to it is taken back) once nothing was heard from it for ``dead_after_s(period)``. The
# slack is for real networks: beacons leave from an I/O loop that shares the CPU with compute, and
# on a shaped link a beacon waits behind the activations queued before it.
DEAD_AFTER_PERIODS = 4.0
DEAD_AFTER_SLACK_S = 0.2


def dead_after_s(beacon_period_s: float) -> float:
    """Seconds without a beacon (or any message) after which a worker counts as dead."""
    return DEAD_AFTER_PERIODS * beacon_period_s + DEAD_AFTER_SLACK_S


def weight_of(source: SourceView) -> float:
    """The priority weight gamma*alpha of a source's tasks."""
    return source.priority * source.accuracy


# A source's partitions unless its spec says otherwise: four of ~equal compute (the authors' PA-MDI
# demo draws four partitions; their code splits ResNet-56 into four equal-compute parts). A model
# with fewer blocks gets one partition per block.
DEFAULT_PARTITIONS = 4
# The spec's word for one partition per block (every block boundary a decision point).
PER_BLOCK = "blocks"


def split_blocks(costs: Sequence[float], parts: int | str | None) -> tuple[int, ...]:
    """Cut ``len(costs)`` sequential blocks into ``parts`` contiguous partitions of ~equal cost.

    Returns the boundaries ``(0, ..., n)``: partition p runs blocks ``[b[p], b[p+1])``. ``None``
    or ``"blocks"`` (or ``parts >= n``) means one partition per block. Each cut is placed at the
    block boundary whose cumulative cost is nearest the ideal ``total * p / parts``, while keeping
    every partition non-empty; zero total cost falls back to equal block counts.
    """
    n = len(costs)
    if n == 0:
        raise ValueError("a model needs at least one block")
    if parts is None or parts == PER_BLOCK:
        return tuple(range(n + 1))
    if isinstance(parts, bool) or not isinstance(parts, int):
        raise ValueError(f"partitions must be a whole number >= 1 or {PER_BLOCK!r}, got {parts!r}")
    if parts < 1:
        raise ValueError(f"partitions must be >= 1, got {parts}")
    if parts >= n:
        return tuple(range(n + 1))
    total = math.fsum(costs)
    cum = [0.0]
    for c in costs:
        cum.append(cum[-1] + (c if total > 0 else 1.0))
    total = cum[-1]
    bounds = [0]
    for p in range(1, parts):
        target = total * p / parts
        lo = bounds[-1] + 1  # partition p-1 non-empty
        hi = n - (parts - p)  # leave one block for each remaining partition
        best = min(range(lo, hi + 1), key=lambda i: (abs(cum[i] - target), i))
        bounds.append(best)
    bounds.append(n)
    return tuple(bounds)


def partition_end(source: SourceView, block: int) -> int:
    """End (exclusive) of the partition that contains ``block``."""
    i = bisect.bisect_right(source.bounds, block)
    if i >= len(source.bounds):
        return source.num_blocks
    return source.bounds[i]


def source_view_from_profile(
    name: str,
    node: str,
    profile: ModelProfile,
    *,
    priority: float = 1.0,
    accuracy: float = 1.0,
    partitions: int | str | None = None,
) -> SourceView:
    """Build a ``SourceView`` from a measured ``ModelProfile``.

    ``partitions`` as in ``split_blocks`` (None or ``"blocks"``: one per block; a spec's source
    passes its own, ``DEFAULT_PARTITIONS`` unless it says otherwise). Partitions are cut to ~equal
    profiled time (FLOPs when the profile has no timings). A profile without timings is refused:
    the simulator and the policies need seconds.
    """
    if any(b.time_s is None for b in profile.blocks):
        raise ValueError(f"profile of {profile.model} has no block timings (profile it first)")
    times = tuple(float(b.time_s or 0.0) for b in profile.blocks)
    flops = [float(b.flops) for b in profile.blocks]
    bounds = split_blocks(times if math.fsum(times) > 0 else flops, partitions)
    return SourceView(
        name=name,
        node=node,
        model=profile.model,
        priority=float(priority),
        accuracy=float(accuracy),
        block_time_s=times,
        block_out_bytes=tuple(int(b.out_bytes) for b in profile.blocks),
        input_bytes=int(profile.input_bytes),
        result_bytes=int(profile.result_bytes),
        bounds=bounds,
    )


def transfer_s(nbytes: int, peer: PeerView) -> float:
    """Time to move ``nbytes`` to ``peer``: wait for the link's backlog, serialize at its goodput,
    propagate."""
    if math.isinf(peer.rate_bps):
        return 0.0
    return peer.link_backlog_s + nbytes * 8.0 / peer.rate_bps + peer.delay_s


def link_estimate(world: WorldView, a: str, b: str) -> tuple[float, float] | None:
    """(goodput bps, delay s) of the directed link a -> b as ``world`` knows it, or None if there is none.

    The holder's own links come from its peer views (fresh); other links from ``world.links``.
    When ``world.links`` is empty (a caller that does not know the graph's rates), a link is
    assumed wherever ``world.neighbours`` says so (everywhere when that is empty too: full mesh)
    and given the rate and delay of the holder's own link to ``b`` (else to ``a``): exact on a
    uniform mesh, an estimate elsewhere.
    """
    if a == b:
        return None
    here = world.here
    if a == here:
        peer = world.peers.get(b)
        return (peer.rate_bps, peer.delay_s) if peer is not None else world.links.get((a, b))
    if world.links:
        return world.links.get((a, b))
    if world.neighbours and b not in world.neighbours.get(a, ()):
        return None
    for name in (b, a):
        peer = world.peers.get(name)
        if peer is not None and name != here:
            return (peer.rate_bps, peer.delay_s)
    return None


def plan_chain(
    start: str,
    speeds: Mapping[str, float],
    neighbours: Mapping[str, Sequence[str]],
    *,
    length: int = 0,
    exclude: frozenset[str] = frozenset(),
) -> tuple[str, ...]:
    """A simple path of workers starting at ``start`` for a single-chain (AR-MDI) pipeline.

    Greedy walk: from the last node, step to the fastest unvisited neighbour (ties by name); when
    the graph has no adjacency information every node is a neighbour (full mesh). ``length`` caps
    the chain (0 = as long as the walk goes); ``exclude`` removes known-dead workers.
    """
    nodes = sorted(set(speeds) | {start})
    chain = [start]
    seen = {start}
    while length <= 0 or len(chain) < length:
        last = chain[-1]
        nbrs = neighbours.get(last) if neighbours else None
        pool = nodes if nbrs is None else nbrs
        options = [n for n in pool if n not in seen and n not in exclude]
        if not options:
            break
        nxt = min(options, key=lambda n: (-speeds.get(n, 1.0), n))
        chain.append(nxt)
        seen.add(nxt)
    return tuple(chain)


def chain_shares(source: SourceView, chain: Sequence[str], speeds: Mapping[str, float]) -> tuple[Placement, ...]:
    """Split all blocks of ``source`` over ``chain`` with profiled-time shares proportional to speed.

    Worker i gets the contiguous range whose cumulative profiled time is nearest
    ``total * sum(speed[:i+1]) / sum(speed)``; workers whose share rounds to zero blocks are
    skipped. Returns one ``Placement`` per worker that got blocks (index = its compute seconds).
    """
    spd = [max(speeds.get(n, 1.0), 1e-9) for n in chain]
    total_speed = math.fsum(spd)
    shares = [s / total_speed for s in spd]
    n = source.num_blocks
    cum = [0.0]
    for t in source.block_time_s:
        cum.append(cum[-1] + t)
    total = cum[-1] if cum[-1] > 0 else float(n)
    if cum[-1] <= 0:
        cum = [float(i) for i in range(n + 1)]
    out: list[Placement] = []
    start = 0
    acc = 0.0
    for i, node in enumerate(chain):
        if start >= n:
            break
        acc += shares[i]
        if i == len(chain) - 1:
            end = n
        else:
            target = total * acc
            end = min(range(start, n + 1), key=lambda j: (abs(cum[j] - target), j))
        if end > start:
            out.append(Placement(node, start, end, (cum[end] - cum[start]) / spd[i]))
            start = end
    return tuple(out)


def shortest_paths(
    start: str, neighbours: Mapping[str, Sequence[str]], cost: Callable[[str, str], float]
) -> dict[str, tuple[str, ...]]:
    """Dijkstra from ``start``: the cheapest path (as a node tuple) to every reachable node.

    Ties between equal-cost paths are broken by the lexicographic order of the paths, so the
    result is deterministic.
    """
    best: dict[str, tuple[float, tuple[str, ...]]] = {start: (0.0, (start,))}
    heap: list[tuple[float, tuple[str, ...]]] = [(0.0, (start,))]
    done: set[str] = set()
    while heap:
        d, path = heapq.heappop(heap)
        node = path[-1]
        if node in done:
            continue
        done.add(node)
        for nb in neighbours.get(node, ()):
            if nb in done:
                continue
            nd = d + cost(node, nb)
            cand = (nd, (*path, nb))
            if nb not in best or cand < best[nb]:
                best[nb] = cand
                heapq.heappush(heap, cand)
    return {n: p for n, (_, p) in best.items()}
