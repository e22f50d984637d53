"""Group commit for /send: concurrent requests share commits, every row is committed before its caller
returns, and a failing batch writes nothing and fails every caller in it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import Message, utcnow
from app.domain.ids import new_message_sid
from app.services.accept_batch import AcceptBatcher


def row(sid: str | None = None) -> dict[str, object]:
    now = utcnow()
    return {"sid": sid or new_message_sid(), "status": "scheduled", "to_number": "+15550001111", "body": "b",
            "encoding": "GSM7", "segments": 1, "channel": "smpp", "attempts": 0, "due_at": None,
            "created_at": now, "updated_at": now}


async def count(sessions: async_sessionmaker[AsyncSession], sids: list[str]) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Message).where(Message.sid.in_(sids))) or 0)


async def test_concurrent_inserts_share_commits(module_sessions: async_sessionmaker[AsyncSession]) -> None:
    batcher = AcceptBatcher(module_sessions)
    rows = [row() for _ in range(300)]

    async def one(r: dict[str, object]) -> int:
        await batcher.insert([r])
        return await count(module_sessions, [str(r["sid"])])  # committed by the time insert returns

    seen = await asyncio.gather(*(one(r) for r in rows))
    assert seen == [1] * 300
    assert batcher.rows == 300 and batcher.commits < 300 / 4


async def test_a_failing_batch_writes_nothing(module_sessions: async_sessionmaker[AsyncSession]) -> None:
    batcher = AcceptBatcher(module_sessions)
    taken = row()
    await batcher.insert([taken])
    good, clash = row(), row(str(taken["sid"]))  # the second one repeats a primary key
    results = await asyncio.gather(batcher.insert([good]), batcher.insert([clash]), return_exceptions=True)
    if not any(isinstance(r, Exception) for r in results[:1]):
        # The two landed in different batches: the clash alone failed, the good row is committed.
        assert isinstance(results[1], IntegrityError) and await count(module_sessions, [str(good["sid"])]) == 1
    else:
        assert all(isinstance(r, IntegrityError) for r in results)
        assert await count(module_sessions, [str(good["sid"])]) == 0
    with pytest.raises(IntegrityError):
        await batcher.insert([row(str(taken["sid"]))])
