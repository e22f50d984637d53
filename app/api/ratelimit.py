"""Per-API-key token buckets (in process: each replica enforces its share)."""

from __future__ import annotations

import math
import time


class RateLimiter:
    def __init__(self, default_rate: float, burst: int = 0) -> None:
        self.default_rate = default_rate
        self.burst = burst
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, last time)

    def check(self, key_id: int, rate: float | None = None) -> float:
        """0.0 when allowed, else the seconds to wait (for Retry-After)."""
        rate = self.default_rate if rate is None else rate
        if rate <= 0:
            return 0.0
        capacity = float(self.burst or max(1, math.ceil(rate)))
        now = time.monotonic()
        tokens, last = self._buckets.get(key_id, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1.0 - tokens) / rate
