"""PostgreSQL LISTEN/NOTIFY: tell every replica something changed (a key was revoked) within milliseconds.

`notify` queues a notification in the caller's transaction: PostgreSQL delivers it at COMMIT, and not
at all on a rollback. `Listener` holds one connection of its own (outside the pool) that LISTENs,
reconnects with backoff, and reports whether it is live: while it is not, notifications may be missed
and the caller must not trust anything it cached on the strength of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("smsgw.notify")

HEARTBEAT_SECONDS = 1.0  # a dead listening connection is noticed within about this much


async def notify(session: AsyncSession, channel: str, payload: str) -> None:
    """NOTIFY `channel` at this session's COMMIT (nothing on SQLite, which has one process anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """LISTEN on `channel`; `on_message(payload)` per notification, `on_state(live)` on every change."""

    def __init__(self, url: str, channel: str, on_message: Callable[[str], None],
                 on_state: Callable[[bool], None]) -> None:
        self._dsn = asyncpg_dsn(url)
        self._channel = channel
        self._on_message = on_message
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen-{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _deliver(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_message(payload)

    async def _run(self) -> None:
        backoff = 0.5
        down_logged = False
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                await conn.add_listener(self._channel, self._deliver)
                self._on_state(True)
                if down_logged:
                    log.info("listening for %s again", self._channel)
                backoff, down_logged = 0.5, False
                while True:  # a heartbeat: a connection that died silently delivers nothing
                    await asyncio.sleep(HEARTBEAT_SECONDS)
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), HEARTBEAT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._on_state(False)
                if not down_logged:
                    log.warning("cannot listen for %s, retrying: %s", self._channel, type(exc).__name__)
                    down_logged = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
