"""The receipt-timeout sweep walks messages in the order sent (ix_message_sent) from a mark kept in
sweep_mark, since no index says which are still `sent`: so that a final report's UPDATE is HOT.

Each test has a database of its own (the mark is one row for the whole database)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import create_database, drop_database
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.bulk import insert_rows
from app.db.engine import create_engine, session_factory
from app.db.tables import Message, SweepMark, utcnow
from app.domain.ids import UpstreamId, new_message_sid
from app.domain.messages import Receipt
from app.domain.status import Status
from app.services.dispatching import TIMEOUT_SWEEP, expire_unreceipted
from app.services.receipts import apply_receipts


@pytest.fixture
async def own_db() -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    url = await create_database()
    engine = create_engine(url, 4)
    yield url, session_factory(engine)
    await engine.dispose()
    await drop_database(url)


def _row(sid: str, status: str, sent_at: datetime, updated_at: datetime | None = None,
         upstream_id: str | None = None) -> dict[str, Any]:
    return {"sid": sid, "status": status, "to_number": "+15550002222", "body": "b", "encoding": "GSM7",
            "segments": 1, "channel": "smpp", "provider": "smsc", "created_at": sent_at,
            "updated_at": updated_at or sent_at, "sent_at": sent_at, "upstream_id": upstream_id}


async def _statuses(sessions: async_sessionmaker[AsyncSession], sids: Sequence[str]) -> list[str]:
    async with sessions() as s:
        got = dict((await s.execute(select(Message.sid, Message.status).where(Message.sid.in_(sids)))).all())
    return [got[sid] for sid in sids]


async def _mark(sessions: async_sessionmaker[AsyncSession]) -> tuple[datetime | None, str]:
    async with sessions() as s:
        row = (await s.execute(select(SweepMark.sent_at, SweepMark.sid).where(SweepMark.name == TIMEOUT_SWEEP))).one()
    return row[0], row[1]


async def test_a_message_still_waiting_holds_the_mark_but_not_the_sweep(
        own_db: tuple[str, async_sessionmaker[AsyncSession]]) -> None:
    url, sessions = own_db
    now = utcnow()
    settings = Settings(database_url=url, receipt_timeout_seconds=3600)
    sids = [new_message_sid() for _ in range(6)]
    start = now - timedelta(hours=5)
    # final, then `sent` but changed a minute ago (a report being applied: not timed out yet), then
    # three old ones still `sent` between final ones
    rows = [_row(sids[0], "delivered", start),
            _row(sids[1], "sent", start + timedelta(minutes=1), updated_at=now - timedelta(minutes=1)),
            _row(sids[2], "sent", start + timedelta(minutes=2)),
            _row(sids[3], "delivered", start + timedelta(minutes=3)),
            _row(sids[4], "sent", start + timedelta(minutes=4)),
            _row(sids[5], "sent", now - timedelta(minutes=5))]  # younger than the timeout
    async with sessions() as s:
        await insert_rows(s, Message.__table__, rows)
        await s.commit()

    n, _ = await expire_unreceipted(sessions, settings, scan=2)  # three rounds of two
    assert n == 2
    assert await _statuses(sessions, sids) == ["delivered", "sent", "undelivered", "delivered", "undelivered", "sent"]
    assert await _mark(sessions) == (rows[0]["sent_at"], sids[0])  # it stops before the one waiting

    async with sessions() as s:  # that one's change is an hour old now
        await s.execute(update(Message).where(Message.sid == sids[1]).values(updated_at=now - timedelta(hours=2)))
        await s.commit()
    n, _ = await expire_unreceipted(sessions, settings, scan=2)
    assert n == 1
    assert await _statuses(sessions, sids[:2]) == ["delivered", "undelivered"]
    assert await _mark(sessions) == (rows[4]["sent_at"], sids[4])  # past every message older than the cutoff
    assert (await expire_unreceipted(sessions, settings, scan=2))[0] == 0


async def test_messages_sent_at_the_same_instant_are_all_swept_however_many(
        own_db: tuple[str, async_sessionmaker[AsyncSession]]) -> None:
    url, sessions = own_db
    at = utcnow() - timedelta(hours=3)
    sids = sorted(new_message_sid() for _ in range(25))  # one outcome batch shares its `now`
    async with sessions() as s:
        await insert_rows(s, Message.__table__, [_row(sid, "sent", at) for sid in sids])
        await s.commit()
    n, counts = await expire_unreceipted(sessions, Settings(database_url=url, receipt_timeout_seconds=3600), scan=10)
    assert n == 25 and counts.changes[(Status.UNDELIVERED, "smsc")] == 25
    assert set(await _statuses(sessions, sids)) == {"undelivered"}
    assert await _mark(sessions) == (at, sids[-1])


async def test_one_replica_sweeps_at_a_time(own_db: tuple[str, async_sessionmaker[AsyncSession]]) -> None:
    url, sessions = own_db
    settings = Settings(database_url=url, receipt_timeout_seconds=3600)
    assert (await expire_unreceipted(sessions, settings))[0] == 0  # nothing yet; the mark row is written
    sid = new_message_sid()
    async with sessions() as s:
        await insert_rows(s, Message.__table__, [_row(sid, "sent", utcnow() - timedelta(hours=2))])
        await s.commit()
    async with sessions() as other:  # another replica holds the mark
        await other.execute(select(SweepMark).with_for_update())
        assert (await expire_unreceipted(sessions, settings))[0] == 0
        await other.rollback()
    assert await _statuses(sessions, [sid]) == ["sent"]
    assert (await expire_unreceipted(sessions, settings))[0] == 1
    assert await _statuses(sessions, [sid]) == ["undelivered"]


async def test_a_final_report_is_a_hot_update(own_db: tuple[str, async_sessionmaker[AsyncSession]]) -> None:
    """No index holds a column a final report writes: PostgreSQL adds no index entry for it."""
    url, sessions = own_db
    at = utcnow() - timedelta(seconds=5)
    sids = [new_message_sid() for _ in range(20)]
    upstream = {sid: "f" + secrets.token_hex(8) for sid in sids}  # stored as normalised (no leading zero)
    async with sessions() as s:
        await insert_rows(s, Message.__table__, [_row(sid, "sent", at, upstream_id=upstream[sid]) for sid in sids])
        await s.commit()
    settings = Settings(database_url=url)
    async with sessions() as s:
        finals = await apply_receipts(s, [Receipt(provider="smsc", upstream_id=UpstreamId(upstream[sid]),
                                                  status=Status.DELIVERED, provider_status_code="DELIVRD",
                                                  source="smpp:smsc") for sid in sids], settings)
        updated, hot = (await s.execute(text(
            "SELECT pg_stat_get_xact_tuples_updated('message'::regclass),"
            " pg_stat_get_xact_tuples_hot_updated('message'::regclass)"))).one()
        await s.commit()
    assert sorted(finals) == sorted(sids)
    assert (updated, hot) == (20, 20)
