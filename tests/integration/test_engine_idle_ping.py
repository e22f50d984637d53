"""The pool checks a connection only after it sat idle (app/db/engine.py), on real PostgreSQL: a
connection reused at once is not pinged; one idle past IDLE_PING_SECONDS is, and when its backend is
gone the pool replaces it before the session sees it; a backend that dies between two uses fails that
one statement and the next session gets a new connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from support.backends import terminate_backend

from app.db import engine as engine_module


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pool's pings (one entry per ping)."""
    seen: list[int] = []
    original: Callable[[Any], None] = AsyncAdapt_asyncpg_connection.ping  # SQLAlchemy leaves it unannotated

    def counting(self: Any) -> None:
        seen.append(1)
        original(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting)
    return seen


async def _backend(eng: AsyncEngine) -> int:
    async with eng.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_reused_at_once_is_not_pinged(one_connection: AsyncEngine, pings: list[int]) -> None:
    first = await _backend(one_connection)
    for _ in range(20):
        assert await _backend(one_connection) == first  # the same pooled connection every time
    assert pings == []


async def test_an_idle_connection_whose_backend_is_gone_is_replaced_before_use(
        module_db_url: str, one_connection: AsyncEngine, pings: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.05)
    first = await _backend(one_connection)
    await terminate_backend(module_db_url, first)
    await asyncio.sleep(0.1)
    second = await _backend(one_connection)  # no error: the ping found it dead and the pool reconnected
    assert second != first
    assert len(pings) == 1


async def test_a_backend_gone_between_two_quick_uses_fails_one_statement_then_the_pool_recovers(
        module_db_url: str, one_connection: AsyncEngine, pings: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 3600.0)
    first = await _backend(one_connection)
    await terminate_backend(module_db_url, first)
    with pytest.raises(DBAPIError) as failed:
        await _backend(one_connection)
    assert failed.value.connection_invalidated
    assert await _backend(one_connection) != first
    assert pings == []


async def test_a_driver_connection_lost_in_use_leaves_the_pool(one_connection: AsyncEngine, module_db_url: str) -> None:
    """The accept path's one-statement writes (engine.driver_connection) bypass SQLAlchemy's error
    handling: a connection whose backend died fails that statement and is dropped, so the next caller
    gets a new one instead of the same dead one."""
    async with engine_module.driver_connection(one_connection) as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
    await terminate_backend(module_db_url, pid)
    with pytest.raises((OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)):
        async with engine_module.driver_connection(one_connection) as conn:
            await conn.execute("SELECT 1")
    async with engine_module.driver_connection(one_connection) as conn:
        assert await conn.fetchval("SELECT pg_backend_pid()") != pid
