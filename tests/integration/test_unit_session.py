"""Leaving a unit of work (app/db/engine.py `UnitSession`, `driver_connection`) after its commit gives
the connection back in the same step, without the task SQLAlchemy's own exit waits for (two turns of a
loaded event loop); a session left with its transaction open still rolls it back, as SQLAlchemy's does.
On real PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import QueuePool

from app.db.engine import UnitSession, create_engine, driver_connection, session_factory
from app.db.tables import ApiKey, utcnow


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine_of(request: pytest.FixtureRequest, module_db_url: str, sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(module_db_url if request.param == "postgresql" else sqlite_url, pool_size=2)
    yield eng
    await eng.dispose()


def checked_out(eng: AsyncEngine) -> int:
    """Connections the pool has handed out (create_engine's pool is a QueuePool on both databases)."""
    assert isinstance(eng.pool, QueuePool)
    return eng.pool.checkedout()


def turned() -> list[int]:
    """A list that gains an entry as soon as the event loop takes its next turn."""
    marks: list[int] = []
    asyncio.get_running_loop().call_soon(marks.append, 1)
    return marks


async def test_the_factory_makes_unit_sessions(engine_of: AsyncEngine) -> None:
    async with session_factory(engine_of)() as s:
        assert isinstance(s, UnitSession)


async def test_a_committed_session_is_left_without_a_turn_of_the_loop(engine_of: AsyncEngine) -> None:
    sessions = session_factory(engine_of)
    async with sessions() as s:
        await s.execute(text("SELECT 1"))
        await s.commit()
        marks = turned()
    assert marks == [], "leaving the session waited for the event loop"
    # The connection went back to the pool: with every pooled connection used in turn, none is leaked.
    for _ in range(5):
        async with sessions() as s:
            assert (await s.execute(text("SELECT 1"))).scalar() == 1
            await s.commit()
    assert checked_out(engine_of) == 0


async def test_a_session_left_with_its_transaction_open_rolls_it_back(engine_of: AsyncEngine) -> None:
    sessions: async_sessionmaker[AsyncSession] = session_factory(engine_of)
    with pytest.raises(RuntimeError):
        async with sessions() as s:
            s.add(ApiKey(name="rolled-back", key_hash="f" * 64, prefix="sk_rolled", created_at=utcnow()))
            await s.flush()
            raise RuntimeError("inside the unit of work")
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.name == "rolled-back")) == 0
    assert checked_out(engine_of) == 0


async def test_a_driver_connection_is_given_back_without_a_turn_of_the_loop(module_db_url: str) -> None:
    eng = create_engine(module_db_url, pool_size=1)
    try:
        async with driver_connection(eng) as conn:
            assert await conn.fetchval("SELECT 41 + 1") == 42
            marks = turned()
        assert marks == [], "giving the connection back waited for the event loop"
        assert checked_out(eng) == 0
        async with driver_connection(eng) as conn:  # the one pooled connection, reused
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await eng.dispose()
