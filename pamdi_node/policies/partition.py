"""Cutting a model into partitions (the decision points of a task) and a source's view from a profile."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pamdi_node.policies.types import SourceView

if TYPE_CHECKING:
    from pamdi_node.models.profile import ModelProfile


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
