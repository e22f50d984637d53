"""Killing one PostgreSQL backend of a test's database (a connection lost while a pool holds it), and
reading pg_stat_activity as it is now."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db.engine import create_engine


async def activity_now(conn: AsyncConnection | AsyncSession, sql: str, params: dict[str, Any] | None = None) -> Any:
    """One value of a query on pg_stat_activity, as the backends are now: PostgreSQL takes one snapshot of
    it per transaction, so a poll in one transaction saw the first answer again and again."""
    await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    return await conn.scalar(text(sql), params or {})


async def terminate_and_wait(conn: AsyncConnection | AsyncSession, pid: int) -> None:
    """`pg_terminate_backend(pid)` on `conn`, returning once the backend is gone (at most 5 s)."""
    await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(250):
        if not await activity_now(conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", {"pid": pid}):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} still there after 5 s")


async def terminate_backend(url: str, pid: int) -> None:
    """`terminate_and_wait` from a connection of its own."""
    admin = create_engine(url, pool_size=1)
    try:
        async with admin.connect() as conn:
            await terminate_and_wait(conn, pid)
    finally:
        await admin.dispose()
