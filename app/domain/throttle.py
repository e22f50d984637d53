"""The one token bucket: the per-key rate limit on the API, submit throughput towards an upstream,
and the simulator's throttling all count with it. Pure: the caller passes the clock."""

from __future__ import annotations

import math


class TokenBucket:
    """`rate` tokens per second, holding at most `capacity` (default: one second's worth, at least 1).

    A rate of 0 or less is unlimited."""

    __slots__ = ("_last", "_tokens", "capacity", "rate")

    def __init__(self, rate: float, capacity: float | None = None, *, now: float = 0.0, full: bool = True) -> None:
        self.rate = rate
        self.capacity = float(capacity) if capacity else float(max(1, math.ceil(rate)))
        self._tokens = self.capacity if full else 0.0
        self._last = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when taken, else the seconds until one is there (nothing is taken)."""
        if self.rate <= 0:
            return 0.0
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
