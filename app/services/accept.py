"""Accepting messages from `/send`: validate everything first, then write it all in one transaction.

A request with 10,000 recipients is one multi-row INSERT batch, not 10,000 round trips. What such a
request says once for all recipients (the text, the StatusCallback) is stored once, in a
`send_request` row its messages point to; a single-recipient request keeps them on its one message
row. A number given twice (after normalisation: `+96170123456` and `96170123456`) gets one message:
the answer has one entry per distinct number, in the order first given. The first history entry of
each message (queued/scheduled, by the API) is not written as a row: it is the message's own
`created_at`, which the history view shows first.

A StatusCallback must be an http(s) URL of at most 2,048 characters, without userinfo, whose host is
(in any numeric spelling) or resolves to a public address, or one in `SMSGW_CALLBACK_ALLOW_NETWORKS`
(app/domain/netguard.py). A name that does not resolve at all is accepted: the callback sender
resolves and judges it again when it connects.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tables import IdempotencyRecord, utcnow
from app.domain import encoding as enc
from app.domain.capability import CapabilityError
from app.domain.commands import SendCommand
from app.domain.ids import new_message_sid
from app.domain.netguard import CallbackRefused, CallbackUnresolved, parse_callback_url
from app.domain.phone import PhoneError, normalise_e164, split_recipients, validate_sender
from app.domain.status import Status
from app.errors import BadRequest
from app.services.accept_batch import AcceptBatcher, insert_accepted
from app.services.callback_address import ACCEPT_RESOLUTIONS, check_callback
from app.services.route_shape import Shape, channels, shapes

MAX_SCHEDULE_AHEAD = timedelta(days=365)
MAX_VALIDITY_SECONDS = 31 * 24 * 3600
MAX_SEGMENTS = 255  # the UDH and SAR part counters are one byte
MAX_CHANNEL = 40  # message.channel; without routes configured any name is accepted


@dataclass(slots=True)
class Accepted:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(slots=True)
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
    shapes: list[Shape]  # per recipient: Encoding and Segments as its route's provider sends them


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
    """The checks that need no resolver (accept() resolves the host)."""
    try:
        parse_callback_url(raw)
    except CallbackRefused as exc:
        raise BadRequest(str(exc), "StatusCallback") from None
    return raw.strip()


def plan(req: SendCommand, settings: Settings, now: datetime) -> _Plan:
    """Validate a send request; raises BadRequest naming the first bad field."""
    raw_to = split_recipients(req.To)
    if not raw_to:
        raise BadRequest("To is required", "To", code="missing_field")
    if len(raw_to) > settings.max_recipients:
        raise BadRequest(f"at most {settings.max_recipients} recipients per request", "To")
    recipients: dict[str, None] = {}  # ordered and without repeats
    for i, raw in enumerate(raw_to):
        try:
            recipients[normalise_e164(raw, settings.default_country)] = None
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
        mode = enc.LongMessageMode(req.LongMessageMode.strip().lower()) if req.LongMessageMode \
            else enc.LongMessageMode.SPLIT
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
    if settings.routes and channel not in (known_channels := channels(settings)):
        known = ", ".join(sorted(known_channels))
        raise BadRequest(f"unknown channel {channel!r} (known: {known})", "channel")
    if len(channel) > MAX_CHANNEL:
        raise BadRequest(f"channel is longer than {MAX_CHANNEL} characters", "channel")
    validity = req.ValidityPeriod
    if validity is not None and not 1 <= validity <= MAX_VALIDITY_SECONDS:
        raise BadRequest(f"ValidityPeriod must be 1..{MAX_VALIDITY_SECONDS} seconds", "ValidityPeriod")

    send_at = _parse_send_at(req.SendAt, now) if req.SendAt else None
    callback = _check_url(req.StatusCallback) if req.StatusCallback else None
    unique = list(recipients)
    try:
        per_to = shapes(settings, channel, unique, req.Body, requested, req.Flash, mode, sender,
                        Shape(encoding, segments))
    except CapabilityError as exc:
        raise BadRequest(str(exc), exc.field) from None
    return _Plan(unique, req.Body, sender, channel, encoding, segments, mode, req.Flash, validity,
                 send_at, callback, per_to)


def request_hash(req: SendCommand) -> str:
    return hashlib.sha256(orjson.dumps(dataclasses.asdict(req), option=orjson.OPT_SORT_KEYS)).hexdigest()


async def _replay(session: AsyncSession, api_key_id: int, key: str, digest: str) -> Accepted | None:
    rec = await session.get(IdempotencyRecord, (api_key_id, key))
    if rec is None:
        return None
    if rec.request_hash != digest:
        raise BadRequest("this Idempotency-Key was used with a different request body", "Idempotency-Key",
                         code="idempotency_key_reused")
    return Accepted(rec.status_code, rec.response, replayed=True)


async def accept(
    sessions: async_sessionmaker[AsyncSession],
    req: SendCommand,
    settings: Settings,
    api_key_id: int | None,
    idempotency_key: str | None = None,
    batcher: AcceptBatcher | None = None,
) -> Accepted:
    """Validate and store; commits. Returns the body to answer with.

    Without an Idempotency-Key and with a `batcher`, the rows go in through the group commit (one
    transaction for all concurrent requests) and no session of this request's own is opened; with one,
    the key's record and the rows share one session's transaction."""
    now = utcnow()
    if idempotency_key is None and batcher is not None:
        p = plan(req, settings, now)
        if p.callback is not None:
            await _check_resolved_callback(p.callback, settings)
        rows, requests, answer = _rows(p, req, api_key_id, now)
        await batcher.insert(rows, requests)
        return Accepted(200, answer)
    async with sessions() as session:
        return await _accept_in_session(session, req, settings, api_key_id, idempotency_key, now)


async def _check_resolved_callback(url: str, settings: Settings) -> None:
    try:
        await check_callback(url, settings.callback_networks(), ACCEPT_RESOLUTIONS)
    except CallbackUnresolved:
        pass  # a DNS hiccup is no reason to refuse an SMS: the sender resolves and judges it again
    except CallbackRefused as exc:
        raise BadRequest(str(exc), "StatusCallback") from None


def _rows(p: _Plan, req: SendCommand, api_key_id: int | None,
          now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The message rows, the send_request rows they point to, and the answer."""
    status = (Status.SCHEDULED if p.send_at else Status.QUEUED).value
    mode = p.mode.value
    due_at = p.send_at or now
    requests: list[dict[str, Any]] = []
    batch_sid: str | None = None
    body: str | None = p.body
    callback = p.callback
    if len(p.recipients) > 1:  # stored once, in the send_request its messages point to
        batch_sid = new_message_sid()
        requests.append({"sid": batch_sid, "api_key_id": api_key_id, "body": p.body, "status_callback": p.callback,
                         "created_at": now})
        body = callback = None
    rows: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for to, shape in zip(p.recipients, p.shapes, strict=True):
        sid = new_message_sid()
        encoding = shape.encoding.value
        rows.append({
            "sid": sid, "api_key_id": api_key_id, "batch_sid": batch_sid, "status": status,
            "to_number": to, "from_addr": p.sender, "body": body, "encoding": encoding,
            "segments": shape.segments, "long_message_mode": mode, "flash": p.flash,
            "validity_period": p.validity, "channel": p.channel, "status_callback": callback,
            "attempts": 0, "send_at": p.send_at, "due_at": due_at,
            "created_at": now, "updated_at": now,
        })
        results.append({"MessageSid": sid, "Status": status, "To": to, "Segments": shape.segments,
                        "Encoding": encoding})
    answer: dict[str, Any] = results[0] if len(results) == 1 and isinstance(req.To, str) and "," not in req.To \
        else {"Messages": results}
    return rows, requests, answer


async def _accept_in_session(session: AsyncSession, req: SendCommand, settings: Settings, api_key_id: int | None,
                             idempotency_key: str | None, now: datetime) -> Accepted:
    digest = request_hash(req) if idempotency_key else ""
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255 or "\x00" in idempotency_key:
            raise BadRequest("Idempotency-Key must be 1 to 255 characters, without NUL", "Idempotency-Key")
        replay = await _replay(session, api_key_id or 0, idempotency_key, digest)
        if replay:
            return replay

    p = plan(req, settings, now)
    if p.callback is not None:
        if session.in_transaction():  # the Idempotency-Key lookup's: not held open across a DNS lookup
            await session.rollback()
        await _check_resolved_callback(p.callback, settings)
    rows, requests, answer = _rows(p, req, api_key_id, now)
    await insert_accepted(session, rows, requests)
    if idempotency_key is not None:
        session.add(IdempotencyRecord(api_key_id=api_key_id or 0, key=idempotency_key, request_hash=digest,
                                      status_code=200, response=answer, created_at=now))
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
    return Accepted(200, answer)
