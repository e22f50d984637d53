"""One report per message with published outbox rows deleted: a duplicate receipt applied in a
concurrent transaction (a second replica's bind, a webhook beside the SMPP sink) must not finalise the
message again. The unique `dedupe_key` no longer catches a second report once the first was published
and its row deleted, so the receipt path locks the messages it changes; on real PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.backends import activity_now

from app.config import Settings
from app.db.tables import Message, MessagePart, StatusEvent, utcnow
from app.domain.ids import UpstreamId
from app.domain.messages import Receipt
from app.domain.status import Status
from app.services.receipts import apply_receipts

SETTINGS = Settings(database_url="x", providers=[{"name": "smsc", "type": "smpp", "system_id": "a", "password": "p"}])


async def test_a_duplicate_receipt_in_a_concurrent_transaction_does_not_finalise_the_message_twice(
        module_sessions: async_sessionmaker[AsyncSession]) -> None:
    sid, upstream = "SM" + secrets.token_hex(16), "f" + secrets.token_hex(6)  # as stored: no leading zero
    now = utcnow()
    async with module_sessions() as s:
        await s.execute(insert(Message).values(sid=sid, status="sent", to_number="+4477000000", body="x",
                                               encoding="GSM7", segments=1, channel="smpp", provider="smsc",
                                               created_at=now, updated_at=now))
        await s.execute(insert(MessagePart).values(message_sid=sid, part_no=1, provider="smsc", upstream_id=upstream,
                                                   status="sent", submitted_at=now))
        await s.commit()
    receipt = Receipt(provider="smsc", upstream_id=UpstreamId(upstream), status=Status.DELIVERED,
                      provider_status_code="DELIVRD", source="smpp:smsc")

    async def second() -> list[str]:
        async with module_sessions() as s:
            finals = await apply_receipts(s, [receipt], SETTINGS)
            await s.commit()
            return finals

    async with module_sessions() as first:
        assert await apply_receipts(first, [receipt], SETTINGS) == [sid]
        other = asyncio.create_task(second())
        async with module_sessions() as probe:  # the second waits for the first's row lock
            for _ in range(100):
                waiting = await activity_now(probe, "SELECT count(*) FROM pg_stat_activity"
                                                    " WHERE datname = current_database() AND wait_event_type = 'Lock'")
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting, "the second transaction never waited for the first"
        await first.commit()
    assert await other == []  # it saw the message delivered: no second report, no second final
    async with module_sessions() as s:
        # the first applied it (its history entry is the message row's own), the second only recorded it
        done_at = await s.scalar(select(Message.done_at).where(Message.sid == sid))
        recorded = (await s.execute(select(StatusEvent.status, StatusEvent.applied).where(
            StatusEvent.message_sid == sid))).all()
    assert done_at is not None and [tuple(r) for r in recorded] == [("delivered", False)]
