"""Inbound (mobile-originated) SMS, from `/receive` and from SMPP `deliver_sm`: stored once, forwarded once.

The same upstream id from the same source twice is stored and forwarded once (the unique key on
`inbound_message(source, upstream_sid)` decides, so concurrent duplicates are safe too).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tables import InboundMessage, utcnow
from app.db.upsert import insert_ignore
from app.domain.ids import new_inbound_sid
from app.domain.messages import InboundSms
from app.services import outbox_rows as outbox
from app.services.receipts import outbox_insert

log = logging.getLogger("smsgw.inbound")


async def store_inbound(session: AsyncSession, msg: InboundSms, settings: Settings) -> tuple[str, bool]:
    """Store (no commit). Returns (our sid, True if new; False if it was a duplicate)."""
    now = utcnow()
    sid = new_inbound_sid()
    stmt = insert_ignore(session, InboundMessage).values(
        sid=sid, source=msg.source, upstream_sid=msg.upstream_sid, from_number=msg.from_number,
        to_number=msg.to_number, body=msg.body, payload=msg.extra or None, created_at=now,
    ).returning(InboundMessage.sid)
    inserted = (await session.execute(stmt)).scalar_one_or_none()
    if inserted is None:
        existing = await session.scalar(select(InboundMessage.sid).where(
            InboundMessage.source == msg.source, InboundMessage.upstream_sid == msg.upstream_sid))
        log.info("inbound duplicate ignored", extra={"message_sid": str(existing), "source": msg.source,
                                                     "upstream_sid": msg.upstream_sid})
        return str(existing), False
    doc: dict[str, Any] = {
        "Sid": sid, "SmsSid": msg.upstream_sid, "From": msg.from_number, "To": msg.to_number,
        "Body": msg.body, "Source": msg.source, "ReceivedAt": now.isoformat(),
    }
    if msg.extra:
        doc["Extra"] = msg.extra
    rows = [outbox.inbound_event(queue=settings.inbound_queue, inbound=doc, at=now)]
    if settings.inbound_forward_url:
        rows.append(outbox.forward_event(url=settings.inbound_forward_url, inbound=doc, at=now))
    await outbox_insert(session, rows)
    if log.isEnabledFor(logging.INFO):
        log.info("inbound stored", extra={"message_sid": sid, "source": msg.source, "upstream_sid": msg.upstream_sid,
                                          "from": msg.from_number, "to": msg.to_number})
    return sid, True


async def receive_inbound(sessions: async_sessionmaker[AsyncSession], msg: InboundSms,
                          settings: Settings) -> tuple[str, bool]:
    """Store and commit, in a transaction of its own: once this returns the upstream may be told
    (its 200, or deliver_sm_resp) and will not send the message again. Returns what store_inbound does."""
    async with sessions() as session:
        stored = await store_inbound(session, msg, settings)
        await session.commit()
    return stored
