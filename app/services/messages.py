"""Looking up, listing and canceling messages: each API key sees only its own account's messages
(another account's message is "not found", exactly like an unknown one); an admin key sees all."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import message_queries as q
from app.db.tables import Message, MessagePart, StatusEvent, utcnow
from app.domain.status import CANCELABLE, Status
from app.domain.text import storable
from app.errors import BadRequest, Conflict, NotFound
from app.services.api_keys import KeyInfo


@dataclass(frozen=True, slots=True)
class HistoryItem:
    status: str
    at: datetime
    source: str
    applied: bool = True
    provider_status_code: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    message: Message
    parts: list[MessagePart]
    history: list[StatusEvent]

    def upstream_ids(self) -> list[str | None]:
        """One per part: the part rows', or the message's own for a message of one part (Message.upstream_id)."""
        if self.parts:
            return [p.upstream_id for p in self.parts]
        return [self.message.upstream_id] if self.message.upstream_id is not None else []

    def entries(self) -> list[HistoryItem]:
        """The message's history, oldest first: its acceptance, the status_event rows, and the two entries
        its own row holds (sent, and its final status: see Message.sent_at)."""
        m = self.message
        first = Status.SCHEDULED if m.send_at else Status.QUEUED
        items = [HistoryItem(first.value, m.created_at, "api")]
        items += [HistoryItem(e.status, e.created_at, e.source, e.applied, e.provider_status_code, e.detail)
                  for e in self.history]
        if m.sent_at is not None:
            items.append(HistoryItem(Status.SENT.value, m.sent_at, f"provider:{m.provider or '-'}"))
        if m.done_at is not None:
            items.append(HistoryItem(m.status, m.done_at, m.done_source or "-", True, m.provider_status_code,
                                     m.done_detail))
        return sorted(items, key=lambda h: h.at)  # stable: a tie keeps the order above


@dataclass(frozen=True, slots=True)
class MessagePage:
    records: list[MessageRecord]
    next_cursor: str | None


async def get(session: AsyncSession, key: KeyInfo, sid: str) -> MessageRecord:
    m = await q.get_message(session, sid, key.account) if storable(sid) else None  # `%00` is no sid
    if m is None:
        raise NotFound(f"no message {sid}", "MessageSid")
    parts = await q.parts_of(session, [sid])
    history = await q.history_of(session, [sid])
    return MessageRecord(m, parts[sid], history[sid])


def encode_cursor(m: Message) -> str:
    raw = f"{m.created_at.isoformat()}|{m.sid}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, sid = raw.split("|", 1)
        when = datetime.fromisoformat(at)
        if not storable(sid):
            raise ValueError("sid")
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC), sid
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise BadRequest("invalid cursor", "cursor") from None


def _since(raw: str) -> datetime:
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("since must be an ISO-8601 time", "since") from None
    if when.tzinfo is None:
        raise BadRequest("since needs a UTC offset", "since")
    try:
        return when.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
        raise BadRequest("since is out of range", "since") from None


def parse_filter(status: str | None, to: str | None, since: str | None, cursor: str | None) -> q.MessageFilter:
    wanted: str | None = None
    if status is not None:
        try:
            wanted = Status(status.lower()).value
        except ValueError:
            raise BadRequest(f"unknown status {status!r}", "status") from None
    number: str | None = None
    if to is not None:
        if not storable(to):
            raise BadRequest("to must not contain NUL characters", "to")
        t = to.strip()
        number = t if t.startswith("+") else "+" + t
    return q.MessageFilter(status=wanted, to=number, since=_since(since) if since is not None else None,
                           after=_decode_cursor(cursor) if cursor is not None else None)


async def list_page(session: AsyncSession, key: KeyInfo, f: q.MessageFilter, limit: int) -> MessagePage:
    """A page, newest first, each message with its parts and its history (as GET of one gives it)."""
    rows = await q.list_messages(session, key.account, f, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    sids = [m.sid for m in rows]
    parts = await q.parts_of(session, sids)
    history = await q.history_of(session, sids)
    return MessagePage([MessageRecord(m, parts[m.sid], history[m.sid]) for m in rows],
                       encode_cursor(rows[-1]) if more and rows else None)


async def cancel(session: AsyncSession, key: KeyInfo, sid: str) -> MessageRecord:
    """Cancel a scheduled or queued message of this account; commits. 404 / 409 otherwise."""
    if not storable(sid):
        raise NotFound(f"no message {sid}", "MessageSid")
    if await q.cancel(session, sid, key.account, [s.value for s in CANCELABLE], Status.CANCELED.value, utcnow()):
        await session.commit()
        return await get(session, key, sid)
    m = await q.get_message(session, sid, key.account)
    if m is None:
        raise NotFound(f"no message {sid}", "MessageSid")
    raise Conflict(f"message is {m.status}; only scheduled or queued messages can be canceled", "Status")
