"""GET /msg-client/messages[/{sid}] and DELETE (cancel) — the message as stored, with its history."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import and_, or_, select, update

from app.api.deps import ApiKeyDep, Session
from app.api.errors import BadRequest, Conflict, NotFound
from app.api.schemas import HistoryEntry, MessagePage, MessageSummary, MessageView, error_responses, storable
from app.db.tables import Message, MessagePart, StatusEvent, utcnow
from app.domain.status import CANCELABLE, Status

router = APIRouter(prefix="/msg-client", tags=["messages"])


def _summary(m: Message, parts: list[MessagePart]) -> MessageSummary:
    return MessageSummary(
        MessageSid=m.sid, Status=m.status, To=m.to_number, From=m.from_addr, Body=m.body, Segments=m.segments,
        Encoding=m.encoding, Channel=m.channel, Provider=m.provider,
        UpstreamIds=[p.upstream_id for p in sorted(parts, key=lambda p: p.part_no)],
        ProviderStatusCode=m.provider_status_code, ErrorCode=m.error_code, CreatedAt=m.created_at,
        UpdatedAt=m.updated_at, SendAt=m.send_at,
    )


def _view(m: Message, parts: list[MessagePart], events: list[StatusEvent]) -> MessageView:
    first = Status.SCHEDULED if m.send_at else Status.QUEUED
    history = [HistoryEntry(Status=first.value, At=m.created_at, Source="api", Applied=True)]
    history += [HistoryEntry(Status=e.status, At=e.created_at, Source=e.source, Applied=e.applied,
                             ProviderStatusCode=e.provider_status_code, Detail=e.detail) for e in events]
    return MessageView(**_summary(m, parts).model_dump(), History=history)


@router.get("/messages/{sid}", response_model=MessageView, responses=error_responses(401, 404, 500),
            summary="One message with its status history")
async def get_message(sid: str, session: Session, key: ApiKeyDep) -> MessageView:
    m = await session.get(Message, sid) if storable(sid) else None  # `%00` in the URL is no message's sid
    if m is None:
        raise NotFound(f"no message {sid}", "MessageSid")
    parts = list((await session.scalars(select(MessagePart).where(MessagePart.message_sid == sid))).all())
    events = list((await session.scalars(
        select(StatusEvent).where(StatusEvent.message_sid == sid).order_by(StatusEvent.id))).all())
    return _view(m, parts, events)


def _encode_cursor(m: Message) -> str:
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


@router.get("/messages", response_model=MessagePage, responses=error_responses(400, 401, 500),
            summary="List messages, newest first, paginated")
async def list_messages(
    session: Session,
    key: ApiKeyDep,
    status: Annotated[str | None, Query(description="one of the contract's statuses")] = None,
    to: Annotated[str | None, Query(description="E.164 destination")] = None,
    since: Annotated[str | None, Query(description="ISO-8601 time with offset: created at or after")] = None,
    cursor: Annotated[str | None, Query(description="NextCursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> MessagePage:
    stmt = select(Message)
    if status is not None:
        try:
            stmt = stmt.where(Message.status == Status(status.lower()).value)
        except ValueError:
            raise BadRequest(f"unknown status {status!r}", "status") from None
    if to is not None:
        if not storable(to):
            raise BadRequest("to must not contain NUL characters", "to")
        t = to.strip()
        stmt = stmt.where(Message.to_number == (t if t.startswith("+") else "+" + t))
    if since is not None:
        try:
            when = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest("since must be an ISO-8601 time", "since") from None
        if when.tzinfo is None:
            raise BadRequest("since needs a UTC offset", "since")
        try:
            when = when.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
            raise BadRequest("since is out of range", "since") from None
        stmt = stmt.where(Message.created_at >= when)
    if cursor is not None:
        at, sid = _decode_cursor(cursor)
        stmt = stmt.where(or_(Message.created_at < at, and_(Message.created_at == at, Message.sid < sid)))
    rows = list((await session.scalars(
        stmt.order_by(Message.created_at.desc(), Message.sid.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    parts_by: dict[str, list[MessagePart]] = {m.sid: [] for m in rows}
    if rows:
        for p in (await session.scalars(select(MessagePart).where(MessagePart.message_sid.in_(parts_by)))).all():
            parts_by[p.message_sid].append(p)
    return MessagePage(Messages=[_summary(m, parts_by[m.sid]) for m in rows],
                       NextCursor=_encode_cursor(rows[-1]) if more and rows else None)


@router.delete("/messages/{sid}", response_model=MessageView, responses=error_responses(401, 404, 409, 500),
               summary="Cancel a scheduled or queued message")
async def cancel_message(sid: str, session: Session, key: ApiKeyDep) -> MessageView:
    if not storable(sid):
        raise NotFound(f"no message {sid}", "MessageSid")
    now = utcnow()
    # One conditional UPDATE: a dispatcher that claims the message first wins, and we answer 409.
    result = await session.execute(
        update(Message)
        .where(Message.sid == sid, Message.status.in_([s.value for s in CANCELABLE]))
        .values(status=Status.CANCELED.value, due_at=None, updated_at=now)
    )
    if not getattr(result, "rowcount", 0):
        m = await session.get(Message, sid)
        if m is None:
            raise NotFound(f"no message {sid}", "MessageSid")
        raise Conflict(f"message is {m.status}; only scheduled or queued messages can be canceled", "Status")
    session.add(StatusEvent(message_sid=sid, status=Status.CANCELED.value, source="api", applied=True,
                            created_at=now))
    await session.commit()
    return await get_message(sid, session, key)
