"""Accepting messages from `/send`: validate everything first, then write it all in one transaction.

A request with 10,000 recipients is one multi-row INSERT batch, not 10,000 round trips. The first
history entry of each message (queued/scheduled, by the API) is not written as a row: it is the
message's own `created_at`, which the history view shows first.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.tables import IdempotencyRecord, Message, utcnow
from app.domain import encoding as enc
from app.domain.commands import SendCommand
from app.domain.ids import new_message_sid
from app.domain.phone import PhoneError, normalise_e164, split_recipients, validate_sender
from app.domain.routing import Route, providers_for
from app.domain.status import Status
from app.errors import BadRequest
from app.services.accept_batch import AcceptBatcher

MAX_SCHEDULE_AHEAD = timedelta(days=365)
MAX_VALIDITY_SECONDS = 31 * 24 * 3600
MAX_SEGMENTS = 255  # the UDH and SAR part counters are one byte
MAX_CHANNEL = 40  # message.channel; without routes configured any name is accepted


@dataclass(frozen=True, slots=True)
class Accepted:
    status_code: int
    body: dict[str, Any]
    sids: list[str]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Plan:
    recipients: list[str]
    body: str
    sender: str | None
    channel: str
    encoding: enc.Encoding
    segments: int
    mode: enc.LongMessageMode
    flash: bool
    validity: int | None
    send_at: datetime | None
    callback: str | None


def _parse_send_at(raw: str, now: datetime) -> datetime | None:
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("SendAt must be an ISO-8601 time with an offset, e.g. 2026-12-01T09:00:00+02:00",
                         "SendAt") from None
    if when.tzinfo is None:
        raise BadRequest("SendAt needs a UTC offset (e.g. +00:00 or Z)", "SendAt")
    try:
        when = when.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
        raise BadRequest("SendAt is out of range", "SendAt") from None
    if when - now > MAX_SCHEDULE_AHEAD:
        raise BadRequest("SendAt is more than a year ahead", "SendAt")
    return when if when > now else None  # a time already past means "now"


def _check_url(raw: str) -> str:
    try:
        parts = urlsplit(raw.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket: `http://[::1`
        raise BadRequest("StatusCallback must be an http(s) URL", "StatusCallback") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest("StatusCallback must be an http(s) URL", "StatusCallback")
    return raw.strip()


def plan(req: SendCommand, settings: Settings, now: datetime) -> _Plan:
    """Validate a send request; raises BadRequest naming the first bad field."""
    raw_to = split_recipients(req.To)
    if not raw_to:
        raise BadRequest("To is required", "To", code="missing_field")
    if len(raw_to) > settings.max_recipients:
        raise BadRequest(f"at most {settings.max_recipients} recipients per request", "To")
    recipients: list[str] = []
    for i, raw in enumerate(raw_to):
        try:
            recipients.append(normalise_e164(raw, settings.default_country))
        except PhoneError as exc:
            where = "To" if len(raw_to) == 1 else f"To[{i}]"
            raise BadRequest(str(exc), where) from None

    if req.Body == "":
        raise BadRequest("Body is empty", "Body", code="missing_field")
    try:
        requested = enc.parse_requested_encoding(req.Encoding)
    except enc.EncodingError as exc:
        raise BadRequest(str(exc), "Encoding") from None
    try:
        mode = enc.LongMessageMode((req.LongMessageMode or "split").strip().lower())
    except ValueError:
        raise BadRequest("LongMessageMode must be split, split_sar, payload or cut", "LongMessageMode") from None
    try:
        encoding = enc.choose_encoding(req.Body, requested)
        segments = enc.count_segments(req.Body, encoding)
    except enc.EncodingError as exc:
        raise BadRequest(str(exc), "Body") from None
    if mode is enc.LongMessageMode.CUT:
        segments = 1
    if segments > MAX_SEGMENTS:
        raise BadRequest(f"Body needs {segments} segments; at most {MAX_SEGMENTS}", "Body")

    sender = None
    if req.From is not None and req.From.strip():
        try:
            sender = validate_sender(req.From)
        except PhoneError as exc:
            raise BadRequest(str(exc), "From") from None

    channel = (req.channel or settings.default_channel).strip()
    if settings.routes and channel not in settings.channels:
        known = ", ".join(sorted(settings.channels))
        raise BadRequest(f"unknown channel {channel!r} (known: {known})", "channel")
    if len(channel) > MAX_CHANNEL:
        raise BadRequest(f"channel is longer than {MAX_CHANNEL} characters", "channel")
    if encoding is enc.Encoding.LATIN1 and not _routes_take_latin1(settings, channel, recipients, req.Flash):
        raise BadRequest("latin1 is not accepted by this route's providers (flash over SMPP never is); "
                         "use auto, gsm7 or ucs2", "Encoding")

    validity = req.ValidityPeriod
    if validity is not None and not 1 <= validity <= MAX_VALIDITY_SECONDS:
        raise BadRequest(f"ValidityPeriod must be 1..{MAX_VALIDITY_SECONDS} seconds", "ValidityPeriod")

    send_at = _parse_send_at(req.SendAt, now) if req.SendAt else None
    callback = _check_url(req.StatusCallback) if req.StatusCallback else None
    return _Plan(recipients, req.Body, sender, channel, encoding, segments, mode, req.Flash, validity,
                 send_at, callback)


def _routes_take_latin1(settings: Settings, channel: str, recipients: list[str], flash: bool) -> bool:
    """Latin-1 only when every provider the message may go to (failover included) takes it."""
    routes = [Route(r.channel, r.prefix, tuple(r.providers)) for r in settings.routes]
    names = {n for to in recipients for n in providers_for(routes, channel, to)}
    return bool(names) and all(settings.provider(n).takes_latin1(flash) for n in names)


def request_hash(req: SendCommand) -> str:
    return hashlib.sha256(orjson.dumps(dataclasses.asdict(req), option=orjson.OPT_SORT_KEYS)).hexdigest()


async def _replay(session: AsyncSession, api_key_id: int, key: str, digest: str) -> Accepted | None:
    rec = await session.get(IdempotencyRecord, (api_key_id, key))
    if rec is None:
        return None
    if rec.request_hash != digest:
        raise BadRequest("this Idempotency-Key was used with a different request body", "Idempotency-Key",
                         code="idempotency_key_reused")
    return Accepted(rec.status_code, rec.response, [], replayed=True)


async def accept(
    session: AsyncSession,
    req: SendCommand,
    settings: Settings,
    api_key_id: int | None,
    idempotency_key: str | None = None,
    batcher: AcceptBatcher | None = None,
) -> Accepted:
    """Validate and store; commits. Returns the body to answer with.

    Without an Idempotency-Key and with a `batcher`, the rows go in through the group commit (one
    transaction for all concurrent requests); with one, the key's record and the rows share this
    session's transaction."""
    now = utcnow()
    digest = request_hash(req) if idempotency_key else ""
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255 or "\x00" in idempotency_key:
            raise BadRequest("Idempotency-Key must be 1 to 255 characters, without NUL", "Idempotency-Key")
        replay = await _replay(session, api_key_id or 0, idempotency_key, digest)
        if replay:
            return replay

    p = plan(req, settings, now)
    status = Status.SCHEDULED if p.send_at else Status.QUEUED
    batch_sid = new_message_sid() if len(p.recipients) > 1 else None
    rows: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for to in p.recipients:
        sid = new_message_sid()
        rows.append({
            "sid": sid, "api_key_id": api_key_id, "batch_sid": batch_sid, "status": status.value,
            "to_number": to, "from_addr": p.sender, "body": p.body, "encoding": p.encoding.value,
            "segments": p.segments, "long_message_mode": p.mode.value, "flash": p.flash,
            "validity_period": p.validity, "channel": p.channel, "status_callback": p.callback,
            "attempts": 0, "send_at": p.send_at, "due_at": p.send_at or now,
            "created_at": now, "updated_at": now,
        })
        results.append({"MessageSid": sid, "Status": status.value, "To": to, "Segments": p.segments,
                        "Encoding": p.encoding.value})
    body: dict[str, Any] = results[0] if len(results) == 1 and isinstance(req.To, str) and "," not in req.To \
        else {"Messages": results}

    if idempotency_key is None and batcher is not None:
        await batcher.insert(rows)
        return Accepted(200, body, [r["sid"] for r in rows])
    await session.execute(insert(Message), rows)
    if idempotency_key is not None:
        session.add(IdempotencyRecord(api_key_id=api_key_id or 0, key=idempotency_key, request_hash=digest,
                                      status_code=200, response=body, created_at=now))
    try:
        await session.commit()
    except IntegrityError:
        # The same Idempotency-Key committed by a concurrent request first: answer as it did.
        await session.rollback()
        if idempotency_key is not None:
            replay = await _replay(session, api_key_id or 0, idempotency_key, digest)
            if replay:
                return replay
        raise
    return Accepted(200, body, [r["sid"] for r in rows])


async def message_exists(session: AsyncSession, sid: str) -> bool:
    return (await session.scalar(select(Message.sid).where(Message.sid == sid))) is not None
