"""Start-up that waits for the database instead of failing.

PostgreSQL may be down, restarting, or out of connection slots when a gateway starts (a replica
scheduled before the database, a failover). The process starts anyway: it answers `/health/ready` 503
and every API call 503 with `Retry-After` while `Startup.done` is false, and retries with backoff
until the database answers; then it bootstraps the keys and starts the workers, once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("smsgw")

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


@dataclass
class Startup:
    done: bool = False
    attempts: int = 0
    last_error: str | None = None
    waiting_since: float | None = None
    failed: str | None = None  # the database came, but starting the rest failed (logged with its trace)

    def state(self) -> dict[str, object]:
        if self.done:
            return {"ok": True}
        waited = None if self.waiting_since is None else round(time.monotonic() - self.waiting_since, 1)
        return {"ok": False, "waiting_for": "database" if self.failed is None else None, "attempts": self.attempts,
                "error": self.failed or self.last_error, "waited_seconds": waited}


async def database_step(engine: AsyncEngine, bootstrap: Callable[[], Awaitable[None]]) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    await bootstrap()


async def wait_for_database(startup: Startup, engine: AsyncEngine, bootstrap: Callable[[], Awaitable[None]],
                            then: Callable[[], Awaitable[None]]) -> None:
    """Retry `database_step` with capped exponential backoff (and jitter, so replicas restarted together
    do not knock in step), then run `then` (the workers). A log line when waiting starts, when the error
    changes, and when it ends, whatever the number of attempts in between."""
    delay = FIRST_RETRY_SECONDS
    startup.waiting_since = startup.waiting_since or time.monotonic()
    while True:
        await asyncio.sleep(delay * (0.75 + random.random() / 2))
        delay = min(delay * 2, MAX_RETRY_SECONDS)
        startup.attempts += 1
        try:
            await database_step(engine, bootstrap)
        except Exception as exc:  # down, refusing, out of slots, not migrated yet: all mean "not yet"
            error = f"{type(exc).__name__}: {exc}"[:300]
            # A new kind of error (refused, then a wrong password) is worth a line; the same again is not.
            same = startup.last_error is not None and startup.last_error.split(":", 1)[0] == type(exc).__name__
            startup.last_error = error
            if same:
                log.debug("database still unavailable (attempt %d): %s", startup.attempts, error)
            else:
                log.warning("database still unavailable, now: %s", error)
            continue
        break
    waited = time.monotonic() - startup.waiting_since
    try:
        await then()
    except Exception as exc:
        startup.failed = f"{type(exc).__name__}: {exc}"[:300]
        log.exception("the database is back but starting the workers failed")
        return
    startup.done = True
    log.info("database available after %.1fs and %d attempts: gateway started", waited, startup.attempts + 1)
