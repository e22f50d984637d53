"""Submit throughput towards an upstream (`throughput` submits per second, 0 = unlimited): an awaitable
gate on the domain's token bucket, shared by the SMPP binds and the HTTP dialects."""

from __future__ import annotations

import asyncio
import time

from app.domain.throttle import TokenBucket


class Throttle:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._bucket = TokenBucket(rate, now=time.monotonic())
        self._lock = asyncio.Lock()  # waiters take tokens in arrival order

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                wait = self._bucket.take(time.monotonic())
                if wait <= 0:
                    return
                await asyncio.sleep(wait)  # the time until the next token: nothing else can free one
