"""Reading and canceling messages for the API, always within one account (`account=None`: every account,
for admin keys). Queries only: the service commits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from app.db.bulk import one_of
from app.db.tables import Message, MessagePart, StatusEvent


@dataclass(frozen=True, slots=True)
class MessageFilter:
    status: str | None = None
    to: str | None = None
    since: datetime | None = None
    after: tuple[datetime, str] | None = None  # (created_at, sid) of the last row of the previous page


def _owned(stmt: Any, account: int | None) -> Any:
    # Another account's message is not "forbidden": it does not exist for this key.
    return stmt if account is None else stmt.where(Message.api_key_id == account)


async def get_message(session: AsyncSession, sid: str, account: int | None) -> Message | None:
    stmt: Any = _owned(select(Message).options(undefer(Message.full_body)).where(Message.sid == sid), account)
    found: Message | None = await session.scalar(stmt)
    return found


async def list_messages(session: AsyncSession, account: int | None, f: MessageFilter, limit: int) -> list[Message]:
    """Newest first; `limit` rows at most."""
    stmt = _owned(select(Message).options(undefer(Message.full_body)), account)
    if f.status is not None:
        stmt = stmt.where(Message.status == f.status)
    if f.to is not None:
        stmt = stmt.where(Message.to_number == f.to)
    if f.since is not None:
        stmt = stmt.where(Message.created_at >= f.since)
    if f.after is not None:
        at, sid = f.after
        stmt = stmt.where(or_(Message.created_at < at, and_(Message.created_at == at, Message.sid < sid)))
    return list((await session.scalars(
        stmt.order_by(Message.created_at.desc(), Message.sid.desc()).limit(limit))).all())


async def parts_of(session: AsyncSession, sids: Sequence[str]) -> dict[str, list[MessagePart]]:
    out: dict[str, list[MessagePart]] = defaultdict(list)
    if sids:
        rows = await session.scalars(select(MessagePart).where(one_of(session, MessagePart.message_sid, sids))
                                     .order_by(MessagePart.message_sid, MessagePart.part_no))
        for p in rows.all():
            out[p.message_sid].append(p)
    return out


async def history_of(session: AsyncSession, sids: Sequence[str]) -> dict[str, list[StatusEvent]]:
    out: dict[str, list[StatusEvent]] = defaultdict(list)
    if sids:
        rows = await session.scalars(select(StatusEvent).where(one_of(session, StatusEvent.message_sid, sids))
                                     .order_by(StatusEvent.id))
        for e in rows.all():
            out[e.message_sid].append(e)
    return out


async def cancel(session: AsyncSession, sid: str, account: int | None, cancelable: Sequence[str], status: str,
                 now: datetime) -> bool:
    """One conditional UPDATE (a dispatcher that claims the message first wins), and its history row.
    False: no such message in this account, or not in a cancelable status."""
    result = await session.execute(
        _owned(update(Message), account)
        .where(Message.sid == sid, Message.status.in_(cancelable))
        .values(status=status, due_at=None, updated_at=now)
    )
    if not getattr(result, "rowcount", 0):
        return False
    await session.execute(insert(StatusEvent), [{"message_sid": sid, "status": status, "source": "api",
                                                 "applied": True, "created_at": now}])
    return True
