"""Log lines that hostile or broken peers can trigger, limited in rate.

A peer can make an agent refuse a message, or strand a result, as often as it can send; one log line
each would fill a disk and drown what matters. ``RateLimitedLog`` passes the first ``burst`` lines of
each ``period_s`` and then says once how many it held back. (The standard library's logging has no
rate limit; a filter would need the same state.)
"""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, level: int, *, burst: int = 5, period_s: float = 10.0) -> None:
        self.logger, self.level, self.burst, self.period_s = logger, level, burst, period_s
        self._window = -float("inf")
        self._passed = 0
        self.suppressed = 0  # held back in the current window
        self.suppressed_total = 0

    def __call__(self, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window >= self.period_s:
            if self.suppressed:
                self.logger.log(self.level, "(%d more such lines in the last %.0f s not shown)", self.suppressed,
                                now - self._window)
            self._window, self._passed, self.suppressed = now, 0, 0
        if self._passed < self.burst:
            self._passed += 1
            self.logger.log(self.level, fmt, *args)
        else:
            self.suppressed += 1
            self.suppressed_total += 1
