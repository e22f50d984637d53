"""Outbox rows for publisher tests: delivery reports as the receipt path writes them."""

from __future__ import annotations

import secrets

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import OutboxEvent
from app.domain.status import Status
from app.events import outbox


async def write_reports(sessions: async_sessionmaker[AsyncSession], queue: str, n: int) -> list[str]:
    sids = ["SM" + secrets.token_hex(16) for _ in range(n)]
    rows = [outbox.report_event(queue=queue, message_sid=sid, status=Status.DELIVERED, provider_status_code="DELIVRD",
                                channel="smpp", to="+96170123456", provider="smsc-main", error_code=None)
            for sid in sids]
    async with sessions() as s:
        await s.execute(insert(OutboxEvent), rows)
        await s.commit()
    return sids
