"""The dispatcher's statements: claiming due messages, recording what each submit attempt did, and the
housekeeping around leases. Set-based (one statement for a batch) and without commits: the unit of
work is app/services/dispatching.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import driver
from app.db.bulk import insert_rows, one_of, update_rows
from app.db.tables import IdempotencyRecord, Message, MessagePart, StatusEvent, SweepMark
from app.domain.dispatching import Claimed
from app.domain.ids import MessageSid, UpstreamId
from app.domain.messages import PartProgress
from app.domain.status import Status

_CLAIMED = (Message.sid, Message.to_number, Message.from_addr, Message.full_body, Message.encoding,
            Message.long_message_mode, Message.flash, Message.validity_period, Message.channel, Message.attempts,
            Message.callback_url, Message.send_at)


def _claim_statement() -> Any:
    """claim_due's statement, built once (building it cost more Python than running it)."""
    now = bindparam("now", type_=Message.due_at.type)
    due = (select(Message.sid)
           .where(Message.due_at.is_not(None), Message.due_at <= now)
           .order_by(Message.due_at).limit(bindparam("limit"))
           .with_for_update(skip_locked=True))  # ignored by SQLite, which has one writer anyway
    return (update(Message).where(Message.sid.in_(due.scalar_subquery()))
            .values(status=Status.SENDING.value, lease_owner=bindparam("owner"), lease_expires_at=bindparam("expires"),
                    due_at=None, attempts=Message.attempts + 1, updated_at=bindparam("claimed_at"))
            .returning(*_CLAIMED))


_CLAIM = _claim_statement()


async def claim_due(session: AsyncSession, owner: str, limit: int, now: datetime, lease: timedelta) -> list[Claimed]:
    """Take up to `limit` due messages: one UPDATE … WHERE sid IN (SELECT … FOR UPDATE SKIP LOCKED)
    RETURNING, so dispatchers sharing a database never take the same one. They become `sending`,
    leased to `owner`; parts accepted on an earlier attempt come with them (`progress`)."""
    rows = await driver.rows(session, _CLAIM, {"now": now, "limit": limit, "owner": owner, "expires": now + lease,
                                               "claimed_at": now})
    claimed = [Claimed(MessageSid(r[0]), r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], int(r[9]), r[10],
                       r[11] is not None and int(r[9]) == 1) for r in rows]
    await _load_progress(session, claimed)
    return claimed


async def _load_progress(session: AsyncSession, claimed: list[Claimed]) -> None:
    """Parts accepted on an earlier attempt, for messages tried before (the only ones that can have any)."""
    again = {c.sid: c for c in claimed if c.attempts > 1}
    if not again:
        return
    rows = (await session.execute(
        select(MessagePart.message_sid, MessagePart.part_no, MessagePart.provider, MessagePart.upstream_id,
               MessagePart.concat_ref)
        .where(one_of(session, MessagePart.message_sid, again)))).all()
    by_sid: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_sid[row[0]].append(row)
    for sid, parts in by_sid.items():
        accepted = {int(p[1]): UpstreamId(p[3]) for p in parts if p[3] is not None}
        if accepted:
            reference = next((int(p[4]) for p in parts if p[4] is not None), None)
            again[MessageSid(sid)].progress = PartProgress(parts[0][2], reference, len(parts), accepted)


async def mark_sent(session: AsyncSession, sent: Sequence[tuple[str, str | None]], provider: str, owner: str,
                    now: datetime) -> set[str]:
    """`sent` by `provider`, for those of the (sid, upstream id held on the message or None) still leased
    to `owner`, in one statement; returns their sids (only a `sending` message is leased: a retry, a
    report or a give-back clears the lease)."""
    status = Status.SENT.value  # once: an enum's .value is a Python-level property
    return set(await update_rows(session, Message.__table__, "sid", [
        {"sid": sid, "status": status, "provider": provider, "lease_owner": None,
         "lease_expires_at": None, "updated_at": now, "sent_at": now, "upstream_id": upstream_id}
        for sid, upstream_id in sent], only_if={"lease_owner": owner}))


async def update_owned(session: AsyncSession, rows: Sequence[dict[str, Any]], owner: str) -> set[str]:
    """Message rows (by sid) still leased to `owner`, each set to its values; returns the sids changed."""
    return set(await update_rows(session, Message.__table__, "sid", rows, only_if={"lease_owner": owner}))


async def delete_unaccepted_parts(session: AsyncSession, sids: Sequence[str]) -> None:
    """The parts an earlier attempt left without an upstream id (the accepted ones keep their rows)."""
    if sids:
        await session.execute(delete(MessagePart).where(one_of(session, MessagePart.message_sid, sids),
                                                        MessagePart.upstream_id.is_(None)))


async def cancel_queued_parts(session: AsyncSession, sid: str) -> None:
    await session.execute(update(MessagePart)
                          .where(MessagePart.message_sid == sid, MessagePart.status == Status.QUEUED.value)
                          .values(status=Status.CANCELED.value))


async def insert_parts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(session, MessagePart.__table__, rows)


async def insert_history(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(session, StatusEvent.__table__, rows)


async def release(session: AsyncSession, owner: str, sids: Sequence[str], now: datetime) -> int:
    """These messages, if still `sending` and leased to `owner`, due again now."""
    if not sids:
        return 0
    result = await session.execute(
        update(Message)
        .where(one_of(session, Message.sid, sids), Message.lease_owner == owner, Message.status == Status.SENDING.value)
        .values(status=Status.QUEUED.value, due_at=now, lease_owner=None, lease_expires_at=None,
                attempts=Message.attempts - 1, updated_at=now)
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def renew_leases(session: AsyncSession, owner: str, sids: Sequence[str], now: datetime,
                       lease: timedelta) -> set[str]:
    """Of these messages, those still `sending` and leased to `owner`, leased to it again until `now +
    lease`; returns their sids. One UPDATE, one row version each."""
    if not sids:
        return set()
    result = await session.execute(
        update(Message)
        .where(one_of(session, Message.sid, sids), Message.lease_owner == owner, Message.status == Status.SENDING.value)
        .values(lease_expires_at=now + lease)
        .returning(Message.sid)
        .execution_options(synchronize_session=False))
    return set(result.scalars().all())


async def release_expired_leases(session: AsyncSession, now: datetime) -> int:
    """Messages whose claimer died: due again now."""
    result = await session.execute(
        update(Message)
        .where(Message.status == Status.SENDING.value, Message.lease_expires_at < now)
        .values(due_at=now, lease_owner=None, lease_expires_at=None, updated_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


SentKey = tuple[datetime | None, str]  # a place in ix_message_sent's order: (sent_at, sid)


async def lock_mark(session: AsyncSession, name: str) -> SentKey | None:
    """Sweep `name`'s mark, locked for this transaction; None while another replica holds it. The row
    is written on first use, from the first message sent."""
    await insert_rows(session, SweepMark.__table__, [{"name": name, "sent_at": None, "sid": "",
                                                     "updated_at": datetime.now(UTC)}], skip_conflicts=True)
    row = (await session.execute(select(SweepMark.sent_at, SweepMark.sid).where(SweepMark.name == name)
                                 .with_for_update(skip_locked=True))).first()
    return None if row is None else (row[0], row[1])


async def move_mark(session: AsyncSession, name: str, to: SentKey, now: datetime) -> None:
    await session.execute(update(SweepMark).where(SweepMark.name == name)
                          .values(sent_at=to[0], sid=to[1], updated_at=now))


async def scan_sent(session: AsyncSession, after: SentKey, before: datetime,
                    limit: int) -> list[tuple[str, str, datetime | None, datetime]]:
    """Up to `limit` messages sent after `after` and before `before`, in the order sent (ix_message_sent),
    whatever their status now: (sid, status, sent_at, updated_at) each."""
    stmt = select(Message.sid, Message.status, Message.sent_at, Message.updated_at).where(
        Message.sent_at.is_not(None), Message.sent_at < before)
    if after[0] is not None:
        # a row comparison, which walks the index from that key (an OR of the two conditions would not)
        since = bindparam(None, after[0], type_=Message.sent_at.type)
        stmt = stmt.where(Message.sent_at >= since, tuple_(Message.sent_at, Message.sid) > tuple_(
            since, bindparam(None, after[1], type_=Message.sid.type)))
    rows = (await session.execute(stmt.order_by(Message.sent_at, Message.sid).limit(limit))).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def lock_unreceipted(session: AsyncSession, sids: Sequence[str], cutoff: datetime) -> list[str]:
    """Of these messages, those still `sent` and unchanged since `cutoff`, locked (skipping locked ones)."""
    if not sids:
        return []
    return list((await session.scalars(
        select(Message.sid)
        .where(one_of(session, Message.sid, sids), Message.status == Status.SENT.value, Message.updated_at < cutoff)
        .order_by(Message.sid).with_for_update(skip_locked=True))).all())


async def delete_idempotency_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
