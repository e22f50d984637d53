"""The status poller's statements on `message_part.next_poll_at` (when a part is next asked about).
Queries only: app/services/polling.py commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.bulk import one_of, update_rows
from app.db.tables import Message, MessagePart


@dataclass(slots=True)
class DuePart:
    """A part whose status is to be asked of its provider now."""

    id: int
    provider: str
    upstream_id: str | None
    submitted_at: datetime | None
    sender: str | None  # the message's From: some query APIs want it with the id


async def claim_due(session: AsyncSession, now: datetime, limit: int, lease: timedelta) -> list[DuePart]:
    """The parts due for a poll, oldest due first, each leased for `lease` (asked again after it if the
    poller died). Claimed like the dispatcher claims messages: replicas never ask about the same part at once."""
    rows = (await session.execute(
        select(MessagePart.id, MessagePart.provider, MessagePart.upstream_id, MessagePart.submitted_at,
               Message.from_addr)
        .join(Message, Message.sid == MessagePart.message_sid)
        .where(MessagePart.next_poll_at.is_not(None), MessagePart.next_poll_at <= now)
        .order_by(MessagePart.next_poll_at).limit(limit)
        .with_for_update(skip_locked=True, of=MessagePart))).all()
    due = [DuePart(int(r[0]), str(r[1]), r[2], r[3], r[4]) for r in rows]
    if due:
        await session.execute(update(MessagePart).where(one_of(session, MessagePart.id, [p.id for p in due]))
                              .values(next_poll_at=now + lease))
    return due


async def reschedule(session: AsyncSession, when: Sequence[tuple[int, datetime]]) -> None:
    """Each part (id) is next asked about at its time: one statement for the whole batch."""
    await update_rows(session, MessagePart.__table__, "id", [{"id": pid, "next_poll_at": at} for pid, at in when])


async def stop_polling(session: AsyncSession, part_ids: Sequence[int]) -> None:
    """Stop polling these parts. Only those still due are written: a part that an answer just made final
    had next_poll_at cleared by applying it, and a second UPDATE of it would be a row version (and
    index entries) for nothing."""
    if part_ids:
        await session.execute(update(MessagePart).where(one_of(session, MessagePart.id, part_ids),
                                                        MessagePart.next_poll_at.is_not(None))
                              .values(next_poll_at=None))
