"""The broker publisher's claim (`outbox_store.take_due`) over two kinds, on real PostgreSQL: it returns
the oldest due rows of both kinds in (available_at, id) order, honours the cursor and leaves other kinds
and future rows alone; and it reads only about `limit` rows a kind, however many are pending (one
ordered index scan per kind, not a read and sort of every pending row)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import outbox_store as store
from app.db.tables import OutboxEvent, utcnow

KINDS = ("report", "inbound")


async def _rows(sessions: async_sessionmaker[AsyncSession], rows: list[tuple[str, int]]) -> list[int]:
    """(kind, seconds ago) rows, returned as their ids in the order given."""
    now = utcnow()
    ids = []
    async with sessions() as s:
        await s.execute(delete(OutboxEvent))
        for kind, ago in rows:
            new_id = await s.scalar(insert(OutboxEvent).values(
                kind=kind, destination="/queue/scan", headers={}, body="{}", dedupe_key=secrets.token_hex(16),
                available_at=now - timedelta(seconds=ago)).returning(OutboxEvent.id))
            assert new_id is not None
            ids.append(new_id)
        await s.commit()
    return ids


async def test_the_claim_takes_the_oldest_of_both_kinds_in_order(
        module_sessions: async_sessionmaker[AsyncSession]) -> None:
    # Interleaved kinds, one callback (the HTTP sender's) among them and one row not due yet.
    ids = await _rows(module_sessions, [("report", 50), ("inbound", 40), ("callback", 35), ("report", 30),
                                        ("inbound", 20), ("report", 10), ("report", -60)])
    r50, i40, _cb, r30, i20, r10, _future = ids
    async with module_sessions() as s:
        first = await store.take_due(s, KINDS, 3, utcnow())
        assert [r.id for r in first] == [r50, i40, r30]
        assert [r.kind for r in first] == ["report", "inbound", "report"]
        last = first[-1]
        assert last.available_at is not None
        after = await store.take_due(s, KINDS, 3, utcnow(), (last.available_at, last.id))
        assert [r.id for r in after] == [i20, r10]  # the callback and the future row stay
        await s.rollback()
    async with module_sessions() as s:  # rolled back: all of them are there again
        again = await store.take_due(s, KINDS, 10, utcnow())
        assert [r.id for r in again] == [r50, i40, r30, i20, r10]
        await s.rollback()


async def test_the_claim_reads_about_limit_rows_a_kind_not_every_pending_row(
        module_sessions: async_sessionmaker[AsyncSession]) -> None:
    await _rows(module_sessions, [("report" if n % 2 else "inbound", 3000 - n) for n in range(2000)])
    async with module_sessions() as s:
        await s.execute(text("ANALYZE outbox_event"))
        await s.commit()
    limit = 50
    # PostgreSQL 15's pg_stat_xact_* also count this connection's earlier transactions until their
    # counts are flushed (at most once a second; later on a busy machine): the claim's own is the change.
    counters = text("SELECT seq_tup_read, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'outbox_event'")
    async with module_sessions() as s:
        seq_before, idx_before = (await s.execute(counters)).one()
        taken = await store.take_due(s, KINDS, limit, utcnow())
        seq_after, idx_after = (await s.execute(counters)).one()
        seq_read, idx_fetched = seq_after - seq_before, idx_after - idx_before
        await s.rollback()
    assert len(taken) == limit
    # Each kind's scan fetches up to `limit` rows, and the DELETE fetches the `limit` it takes by id:
    # 150 at most. Reading every pending row (a Seq Scan, or the index over both kinds then a Sort)
    # would be 2,000.
    assert seq_read == 0, f"a sequential scan read {seq_read} rows"
    assert idx_fetched <= 3 * limit, f"{idx_fetched} rows fetched for {limit}"
