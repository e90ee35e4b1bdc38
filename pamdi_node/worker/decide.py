"""One decision at a partition boundary, for the agent and the simulator alike.

A worker holding a task that enters block ``next_block`` asks the policy to rank placements
(``make_plan``), keeps the usable ones in the policy's order, and walks them (``next_step``): run a
range here, offer it to a peer through RTC/CTC (policies with the handshake), or send it to a peer
directly. A refused offer or a failed send asks for the next step of the same plan. When every
candidate is used up the worker runs the next partition itself, or fails the task when it may not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pamdi_node.policies.types import Placement, Policy, TaskView, WorldView

log = logging.getLogger(__name__)


class PlacementError(ValueError):
    """The policy ranked a placement that cannot be carried out (a policy bug; the simulator raises)."""


class Step(NamedTuple):
    """What the worker does next with the task: ``run`` [start, end) here, ``offer`` it to ``node``
    (RTC, then send on CTC), ``send`` it to ``node``, or ``fail`` (``reason``)."""

    action: Literal["run", "offer", "send", "fail"]
    node: str
    start: int
    end: int
    index: float = math.inf  # the placement's priority index (carried in an offer)
    reason: str = ""


@dataclass(slots=True)
class Plan:
    """The usable candidates of one decision, in the policy's order, and how to offer them."""

    task: TaskView
    candidates: list[Placement]
    handshake: bool  # offers go through RTC/CTC
    fallback_index: float  # the holder's own best alternative (receivers that re-check compare to it)
    num_blocks: int
    partition_end: int  # end of the partition that starts at ``task.next_block`` (the fallback range)
    # When the candidates were scored (the view's now, orchestrator clock): a receiver re-checking an
    # offer compares with the fallback as of then, not with a fallback that has aged meanwhile.
    scored_s: float | None = None


def _problem(p: Placement, task: TaskView, world: WorldView, num_blocks: int) -> str | None:
    if p.start != task.next_block or p.end < p.start or p.end > num_blocks:
        return f"placement {p} does not start at block {task.next_block} of {num_blocks}"
    if p.node == world.here:
        return f"empty placement {p} on the holder itself" if p.end == p.start else None
    if p.node not in world.peers:
        return f"{p.node} is not a neighbour of {world.here}"
    return None


def make_plan(policy: Policy, task: TaskView, world: WorldView, num_blocks: int, partition_end: int, *,
              strict: bool = False) -> Plan:
    """Rank, then keep the candidates a worker can use: well-formed, and on a live peer or here.

    ``strict`` (the simulator) raises ``PlacementError`` on a malformed ranking; otherwise (the
    agent) a malformed placement is dropped with a log line and a failing policy leaves only the
    fallback, so a policy bug never stops a worker."""
    try:
        ranked = policy.rank(task, world)  # a Sequence, only read here
    except Exception:
        if strict:
            raise
        log.exception("policy %s failed to rank task %s; running it locally", policy.name, task.task_id)
        ranked = ()
    if strict and not ranked:
        raise PlacementError(f"policy {policy.name} gave no placement for {task.task_id} at block {task.next_block}")
    cands: list[Placement] = []
    here, peers, first = world.here, world.peers, task.next_block
    fallback = math.inf  # the best index of a candidate on the holder itself
    for p in ranked:
        # The common case, decided inline (a large simulation makes millions of these checks);
        # anything else goes through _problem, which words the fault.
        if p.start == first and first <= p.end <= num_blocks:
            if p.node == here:
                if p.end > first:
                    cands.append(p)
                    if p.index < fallback:
                        fallback = p.index
                    continue
            else:
                peer = peers.get(p.node)
                if peer is not None:
                    if peer.alive:
                        cands.append(p)
                    continue
        problem = _problem(p, task, world, num_blocks)
        if problem is not None:
            if strict:
                raise PlacementError(f"policy {policy.name}: {problem} (task {task.task_id})")
            # A peer outside the view (excluded for this task, or unknown) is dropped quietly, as a
            # dead one; a malformed range is a policy bug worth a line.
            (log.debug if p.node not in world.peers else log.warning)("policy %s: %s; skipped", policy.name, problem)
            continue
        if p.node == here:
            cands.append(p)
            if p.index < fallback:
                fallback = p.index
        elif peers[p.node].alive:
            cands.append(p)
    handshake = policy.needs_handshake(task, world)
    return Plan(task, cands, handshake, fallback, num_blocks, partition_end, world.now_s)


def next_step(plan: Plan, can_run: Callable[[int, int], bool] | None = None) -> Step:
    """The next thing to do with the plan's task, consuming candidates as it goes."""
    here = plan.task.holder
    while plan.candidates:
        p = plan.candidates.pop(0)
        if p.node == here:
            if can_run is None or can_run(p.start, p.end):
                return Step("run", here, p.start, p.end, p.index)
            continue
        return Step("offer" if plan.handshake else "send", p.node, p.start, p.end, p.index)
    start, end = plan.task.next_block, plan.partition_end
    if can_run is None or can_run(start, end):
        return Step("run", here, start, end)
    return Step("fail", here, start, end, reason=f"{here} cannot run blocks [{start},{end}) and no peer took them")
