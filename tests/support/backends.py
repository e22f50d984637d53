"""Killing one PostgreSQL backend of a test's database (a connection lost while a pool holds it)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from app.db.engine import create_engine


async def terminate_backend(url: str, pid: int) -> None:
    """`pg_terminate_backend(pid)`, returning once the backend is gone."""
    admin = create_engine(url, pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(250):
                if not (await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                           {"pid": pid})).scalar_one():
                    return
                await asyncio.sleep(0.02)
    finally:
        await admin.dispose()
    raise AssertionError(f"backend {pid} still there after 5 s")
