"""Per-API-key rate limits (in process: each replica enforces its share), on the domain's token bucket."""

from __future__ import annotations

import time

from app.domain.throttle import TokenBucket


class RateLimiter:
    def __init__(self, default_rate: float, burst: int = 0) -> None:
        self.default_rate = default_rate
        self.burst = burst
        self._buckets: dict[int, TokenBucket] = {}

    def check(self, key_id: int, rate: float | None = None) -> float:
        """0.0 when allowed, else the seconds to wait (for Retry-After)."""
        rate = self.default_rate if rate is None else rate
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key_id] = TokenBucket(rate, self.burst or None, now=now)
        return bucket.take(now)
