"""The spec's ``failures`` on a wall clock: a timer per kill and per restart, from the policy's start."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from orchestrator.spec import Failure


def schedule_failures(failures: Sequence[Failure], t0: float, fail: Callable[[str, bool], None],
                      recover: Callable[[str], None]) -> list[threading.Timer]:
    """Start a daemon timer per failure: ``fail(node, for_good)`` at ``t0 + at_s`` (``for_good``
    when the spec gives no recovery) and ``recover(node)`` at ``t0 + at_s + recover_after_s``."""
    timers: list[threading.Timer] = []
    for f in failures:
        timers.append(threading.Timer(max(0.0, f.at_s - (time.time() - t0)), fail,
                                      args=(f.node, f.recover_after_s is None)))
        if f.recover_after_s is not None:
            timers.append(threading.Timer(f.at_s + f.recover_after_s, recover, args=(f.node,)))
    for t in timers:
        t.daemon = True
        t.start()
    return timers
