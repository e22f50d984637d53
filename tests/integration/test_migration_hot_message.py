"""Migration 0006 on a database with data from 0005 (PostgreSQL): a message still `sent` from before
0005 gets the `sent_at` the timeout sweep goes by, moved from its `sent` history row (so its history
shows it once), or its last change when it has none; and the downgrade restores the status index."""

from __future__ import annotations

import asyncio

from alembic import command
from conftest import database_at
from sqlalchemy import text

from app.db.migrate import alembic_config, upgrade_to_head

_MESSAGE = ("INSERT INTO message (sid, status, to_number, body, encoding, segments, long_message_mode, flash, "
            "channel, attempts, created_at, updated_at) VALUES (:sid, :status, '+1', 'b', 'GSM7', 1, 'split', false, "
            "'smpp', 1, CAST(:at AS text)::timestamptz, CAST(:updated AS text)::timestamptz)")


async def test_legacy_sent_messages_get_their_sent_at_and_keep_one_sent_entry() -> None:
    async with database_at("0005") as (url, engine):
        async with engine.begin() as conn:
            for sid, status in (("SMwithevent", "sent"), ("SMnoevent", "sent"), ("SMdone", "delivered")):
                await conn.execute(text(_MESSAGE), {"sid": sid, "status": status, "at": "2026-11-01T10:00:00Z",
                                                    "updated": "2026-11-01T10:00:09Z"})
            # sent (after 0005) and final before the oldest one still `sent`: the sweep's mark starts here
            await conn.execute(text(_MESSAGE), {"sid": "SMearlier", "status": "delivered", "at": "2026-11-01T09:00:00Z",
                                                "updated": "2026-11-01T09:00:05Z"})
            await conn.execute(text("UPDATE message SET sent_at = CAST('2026-11-01T09:00:01Z' AS text)::timestamptz"
                                    " WHERE sid = 'SMearlier'"))
            await conn.execute(text(
                "INSERT INTO status_event (message_sid, status, source, applied, created_at) VALUES "
                "('SMwithevent', 'sent', 'provider:smsc', true, '2026-11-01T10:00:02Z'),"
                "('SMwithevent', 'sent', 'smpp:smsc:intermediate', false, '2026-11-01T10:00:05Z'),"
                "('SMdone', 'sent', 'provider:smsc', true, '2026-11-01T10:00:02Z')"))
        await asyncio.to_thread(upgrade_to_head, url)
        async with engine.connect() as conn:
            sent_at: dict[str, str | None] = dict((await conn.execute(text(
                "SELECT sid, to_char(sent_at AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM message"))).all())
            events = sorted((await conn.execute(text(
                "SELECT message_sid, source FROM status_event WHERE status = 'sent'"))).all())
            indexes = set((await conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'message'"))).scalars())
            options = (await conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'message'"))).scalar()
            mark = (await conn.execute(text(
                "SELECT to_char(sent_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), sid FROM sweep_mark"))).all()
        assert sent_at == {"SMwithevent": "10:00:02", "SMnoevent": "10:00:09", "SMdone": None,
                           "SMearlier": "09:00:01"}
        assert [tuple(m) for m in mark] == [("09:00:01", "SMearlier")]  # just before the first still `sent`
        # the moved entry is gone; an intermediate report's entry and a finished message's stay
        assert [tuple(e) for e in events] == [("SMdone", "provider:smsc"), ("SMwithevent", "smpp:smsc:intermediate")]
        assert "ix_message_status_created" not in indexes and {"ix_message_sent", "ix_message_lease"} <= indexes
        assert options == ["fillfactor=60"]

        await asyncio.to_thread(command.downgrade, alembic_config(url), "0005")
        async with engine.connect() as conn:
            indexes = set((await conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'message'"))).scalars())
            tables = set((await conn.execute(text("SELECT tablename FROM pg_tables"))).scalars())
        assert "ix_message_status_created" in indexes and "ix_message_sent" not in indexes
        assert "sweep_mark" not in tables
