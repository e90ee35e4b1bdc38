"""The receiver's side of RTC/CTC: collect offers for a short window, then grant at most one.

A worker that gets an RTC opens a window of ``window_s``; every RTC that arrives in it competes, and
the policy's ``grant`` picks the winner (CTC) when the window closes; the others are denied. The
agent and the simulator both keep a ``GrantWindow`` per worker and call ``choose_grant``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Generic, TypeVar

from pamdi_node.policies.types import OffloadRequest, Policy, WorldView
from pamdi_node.worker.decide import Plan, Step

log = logging.getLogger(__name__)

T = TypeVar("T")


def offload_request(plan: Plan, step: Step, sender: str, priority: float) -> OffloadRequest:
    """The RTC for ``step`` of ``plan`` as the receiver weighs it: the range, the sender's index for
    it and the sender's own fallback (what it does keeping the task), which a re-checking receiver
    compares against. The agent sends these fields and rebuilds this on the other side; the
    simulator hands it over as is: one request for both drivers."""
    return OffloadRequest(task=plan.task, sender=sender, receiver=step.node, start=step.start, end=step.end,
                          index=step.index, priority=priority, fallback_index=plan.fallback_index,
                          scored_s=plan.scored_s)


class GrantWindow(Generic[T]):
    __slots__ = ("closes_at", "pending")

    def __init__(self) -> None:
        self.pending: list[T] = []
        self.closes_at: float | None = None  # None: no window open

    def add(self, offer: T, now: float, window_s: float) -> bool:
        """Collect an offer; True when it opened the window (the driver schedules ``closes_at``)."""
        self.pending.append(offer)
        if self.closes_at is None:
            self.closes_at = now + window_s
            return True
        return False

    def close(self) -> list[T]:
        pending, self.pending, self.closes_at = self.pending, [], None
        return pending


def choose_grant(policy: Policy, requests: Sequence[OffloadRequest], world: WorldView, *,
                 strict: bool = False) -> OffloadRequest | None:
    """The request to clear (CTC), or None; a failing policy grants nothing unless ``strict``."""
    if not requests:
        return None
    try:
        return policy.grant(requests, world)
    except Exception:
        if strict:
            raise
        log.exception("policy %s failed in grant", policy.name)
        return None
