"""Killing one PostgreSQL backend of a test's database (a connection lost while a pool holds it),
reading pg_stat_activity as it is now, and the row versions the statistics have counted per table."""

from __future__ import annotations

import asyncio
import time
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


async def row_versions(url: str, tables: tuple[str, ...], expected: dict[str, int]) -> dict[str, int]:
    """n_tup_ins + n_tup_upd + n_tup_del per table (what bench/meters.py counts), once the backends
    that wrote them have reported (at exit, or within a second while idle)."""
    engine = create_engine(url, pool_size=1)
    try:
        deadline = time.monotonic() + 15
        while True:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
                got = {r.relname: int(r.n) for r in (await conn.execute(text(
                    "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables"
                    " WHERE relname = ANY(:t)"), {"t": list(tables)})).all()}
            if got == expected or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
