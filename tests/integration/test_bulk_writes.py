"""app/db/bulk: many rows inserted or updated in one statement, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.bulk import insert_rows, one_of, update_rows
from app.db.engine import create_engine, session_factory
from app.db.tables import Message


@asynccontextmanager
async def _on_sqlite(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def _rows(prefix: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [{"sid": f"{prefix}{i:06d}", "api_key_id": 7, "batch_sid": None, "status": "queued",
             "to_number": "+96170123456", "from_addr": None, "body": "héllo ✓ 𝄞", "encoding": "UCS2",
             "segments": 1, "long_message_mode": "split", "flash": i % 2 == 0, "validity_period": None,
             "channel": "smpp", "status_callback": None, "attempts": 0, "send_at": None, "due_at": now,
             "created_at": now, "updated_at": now} for i in range(n)]


async def _check(sessions: async_sessionmaker[AsyncSession], prefix: str) -> None:
    rows = _rows(prefix, 1500)
    async with sessions() as s:
        await insert_rows(s, Message.__table__, rows)
        await s.commit()
    async with sessions() as s:
        count = await s.scalar(select(func.count()).select_from(Message).where(Message.sid.like(f"{prefix}%")))
        got = (await s.scalars(select(Message).where(Message.sid == rows[10]["sid"]))).one()
    assert count == 1500
    assert (got.body, got.flash, got.api_key_id, got.due_at, got.send_at) == (
        "héllo ✓ 𝄞", True, 7, rows[10]["due_at"], None)


async def test_many_rows_in_one_statement_on_postgresql(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _check(sessions, "SMbulkpg")


@pytest.mark.sqlite
async def test_many_rows_on_sqlite(sqlite_url: str) -> None:
    async with _on_sqlite(sqlite_url) as sessions:
        await _check(sessions, "SMbulksq")


async def test_a_value_too_long_for_its_column_is_refused_not_cut(sessions: async_sessionmaker[AsyncSession]) -> None:
    rows = _rows("SMlong", 2)
    rows[1]["to_number"] = "+" + "1" * 40  # to_number is VARCHAR(20)
    async with sessions() as s:
        with pytest.raises(DBAPIError):
            await insert_rows(s, Message.__table__, rows)
        await s.rollback()
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Message).where(Message.sid.like("SMlong%"))) == 0


async def _check_update(sessions: async_sessionmaker[AsyncSession], prefix: str) -> None:
    rows = _rows(prefix, 300)
    async with sessions() as s:
        await insert_rows(s, Message.__table__, rows)
        await s.commit()
    later = datetime.now(UTC)
    changes = [{"sid": r["sid"], "status": "sent", "provider": "smsc-main", "updated_at": later, "due_at": None}
               for r in rows[:200]] + [{"sid": prefix + "nosuch", "status": "failed", "provider": None,
                                        "updated_at": later, "due_at": None}]
    async with sessions() as s:
        await update_rows(s, Message.__table__, "sid", changes)
        await s.commit()
    async with sessions() as s:
        got = {m.sid: m for m in (await s.scalars(select(Message).where(Message.sid.like(f"{prefix}%")))).all()}
    assert len(got) == 300
    assert all((got[r["sid"]].status, got[r["sid"]].provider, got[r["sid"]].due_at, got[r["sid"]].updated_at)
               == ("sent", "smsc-main", None, later) for r in rows[:200])
    assert all((got[r["sid"]].status, got[r["sid"]].due_at) == ("queued", r["due_at"]) for r in rows[200:])


async def test_many_rows_updated_in_one_statement_on_postgresql(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _check_update(sessions, "SMupdpg")


@pytest.mark.sqlite
async def test_many_rows_updated_on_sqlite(sqlite_url: str) -> None:
    async with _on_sqlite(sqlite_url) as sessions:
        await _check_update(sessions, "SMupdsq")


async def test_columns_left_out_take_their_python_defaults(sessions: async_sessionmaker[AsyncSession]) -> None:
    rows = _rows("SMdflt", 3)
    for r in rows:
        del r["long_message_mode"], r["flash"], r["api_key_id"]  # defaults "split", False, None
    async with sessions() as s:
        await insert_rows(s, Message.__table__, rows)
        await s.commit()
    async with sessions() as s:
        got = (await s.scalars(select(Message).where(Message.sid == rows[0]["sid"]))).one()
    assert (got.long_message_mode, got.flash, got.api_key_id) == ("split", False, None)


async def test_json_columns_go_in_and_are_updated_as_json(sessions: async_sessionmaker[AsyncSession]) -> None:
    from app.db.tables import MessagePart

    rows = _rows("SMjson", 2)
    async with sessions() as s:
        await insert_rows(s, Message.__table__, rows)
        await insert_rows(s, MessagePart.__table__, [
            {"message_sid": r["sid"], "part_no": 1, "provider": "p", "upstream_id": r["sid"], "status": "sent",
             "tlvs": {"0x2000": "01"} if i == 0 else None} for i, r in enumerate(rows)])
        await s.commit()
    async with sessions() as s:
        parts = (await s.scalars(select(MessagePart).where(MessagePart.message_sid.like("SMjson%"))
                                 .order_by(MessagePart.message_sid))).all()
        assert [p.tlvs for p in parts] == [{"0x2000": "01"}, None]
        await update_rows(s, MessagePart.__table__, "id", [
            {"id": parts[0].id, "tlvs": {"0x2000": "01", "0x2001": "x\"y"}}, {"id": parts[1].id, "tlvs": None}])
        await s.commit()
    async with sessions() as s:
        again = (await s.scalars(select(MessagePart).where(MessagePart.message_sid.like("SMjson%"))
                                 .order_by(MessagePart.message_sid))).all()
    assert [p.tlvs for p in again] == [{"0x2000": "01", "0x2001": "x\"y"}, None]


async def _one_of_finds_exactly_the_rows_named(sessions: async_sessionmaker[AsyncSession], prefix: str) -> None:
    rows = _rows(prefix, 40)
    async with sessions() as s:
        await insert_rows(s, Message.__table__, rows)
        await s.commit()
    wanted = [rows[i]["sid"] for i in (3, 17, 39)]
    # a value longer than the column (VARCHAR(34)) whose first 34 characters are a row's sid: compared
    # whole, it names no row (a `::VARCHAR(34)[]` cast would have cut it to that sid)
    longer = rows[5]["sid"].ljust(34, "0") + "-and-more"
    async with sessions() as s:
        await s.execute(cast(Table, Message.__table__).update().where(Message.sid == rows[5]["sid"])
                        .values(sid=rows[5]["sid"].ljust(34, "0")))
        await s.commit()
        for many in (wanted, [*wanted, longer, "none-such"], wanted * 300):
            got = set((await s.scalars(select(Message.sid).where(one_of(s, Message.sid, many)))).all())
            assert got == set(wanted), many[:5]
        assert (await s.scalars(select(Message.sid).where(one_of(s, Message.sid, [])))).all() == []


async def test_one_of_on_postgresql(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _one_of_finds_exactly_the_rows_named(sessions, "SMoneof" + datetime.now(UTC).strftime("%H%M%S%f"))


@pytest.mark.sqlite
async def test_one_of_on_sqlite(sqlite_url: str) -> None:
    async with _on_sqlite(sqlite_url) as sessions:
        await _one_of_finds_exactly_the_rows_named(sessions, "SMoneof")
