"""Waiting for quiescence: "no duplicate arrived" is only known once nothing has arrived for a while,
not after a fixed sleep that a slow broker or a busy machine outlasts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

QUIET_SECONDS = 1.0


async def until_quiet(count: Callable[[], int], quiet: float = QUIET_SECONDS, timeout: float = 30.0) -> int:
    """Waits until `count()` has not changed for `quiet` seconds (each arrival restarts the wait), at most
    `timeout`; returns the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last, since = count(), loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        now = count()
        if now != last:
            last, since = now, loop.time()
        elif loop.time() - since >= quiet:
            break
    return last
