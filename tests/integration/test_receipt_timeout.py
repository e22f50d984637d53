"""A message left `sent` with no receipt (the SMSC lost it, or sends none) becomes undelivered with code
NO_RECEIPT after `receipt_timeout_seconds`, and gets its one report; younger ones are left alone."""

from __future__ import annotations

from datetime import timedelta

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tables import Message, OutboxEvent, utcnow
from app.dispatch.dispatcher import Dispatcher
from app.domain.ids import new_message_sid
from app.metrics import Metrics


async def test_sent_without_receipt_expires(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    now = utcnow()
    old, young = new_message_sid(), new_message_sid()
    rows = [{"sid": sid, "status": "sent", "to_number": "+15550002222", "body": "b", "encoding": "GSM7",
             "segments": 1, "channel": "smpp", "provider": "smsc-main", "created_at": at, "updated_at": at,
             "sent_at": at}
            for sid, at in ((old, now - timedelta(hours=2)), (young, now - timedelta(seconds=30)))]
    async with module_sessions() as s:
        await s.execute(insert(Message), rows)
        await s.commit()
    settings = Settings(database_url=module_db_url, receipt_timeout_seconds=3600)
    dispatcher = Dispatcher(module_sessions, settings, {}, Metrics(), "owner")
    assert await dispatcher.expire_unreceipted() >= 1
    async with module_sessions() as s:
        got = {m.sid: m for m in (await s.scalars(select(Message).where(Message.sid.in_([old, young])))).all()}
        reports = (await s.scalars(select(OutboxEvent).where(OutboxEvent.message_sid == old))).all()
    assert got[old].status == "undelivered" and got[old].error_code == "NO_RECEIPT"
    assert got[young].status == "sent"
    assert len(reports) == 1
    body = orjson.loads(reports[0].body)
    assert body["DeliveryStatus"] == "FAILED" and body["ProviderStatusCode"] == "NO_RECEIPT"
    assert await dispatcher.expire_unreceipted() == 0  # done once


async def test_old_idempotency_keys_are_forgotten(module_db_url: str,
                                                  module_sessions: async_sessionmaker[AsyncSession]) -> None:
    from app.db.tables import IdempotencyRecord

    now = utcnow()
    async with module_sessions() as s:
        await s.execute(insert(IdempotencyRecord), [
            {"api_key_id": 0, "key": "old-key", "request_hash": "h", "status_code": 200, "response": {},
             "created_at": now - timedelta(hours=25)},
            {"api_key_id": 0, "key": "new-key", "request_hash": "h", "status_code": 200, "response": {},
             "created_at": now - timedelta(hours=1)}])
        await s.commit()
    dispatcher = Dispatcher(module_sessions, Settings(database_url=module_db_url), {}, Metrics(), "owner")
    assert await dispatcher.purge_idempotency_keys() == 1
    async with module_sessions() as s:
        keys = set((await s.scalars(select(IdempotencyRecord.key))).all())
    assert "old-key" not in keys and "new-key" in keys
