"""Applying status reports (SMPP receipts, webhooks, status polls) to messages, many at a time.

One call handles a batch in a handful of round trips: one SELECT for the parts the reports may name,
one for their messages and sibling parts, then the updates, history rows, outbox rows and
pending-receipt rows in one flush.

Matching a report to a part (what Jasmin does with its expiring `queue-msgid` keys):
- The report's id is read as the provider's `receipt_id_format` says (`same`, `hex`, `decimal`,
  `auto`); a webhook (no provider known) is read as each candidate part's provider writes ids.
- Only parts submitted within the receipt window (`receipt_timeout_seconds`) are candidates, and of
  those the most recent message's parts that are not final yet: an SMSC that restarted its id counter
  gives new messages old ids, and their receipts belong to the new messages. Several parts of that
  message may share the id (one id and one receipt for a long message): the report applies to all.
- When every candidate is final the report is a duplicate or a late one: written to the most recent
  one's history with `applied = false`, never applied.
- A report for an id nobody has (yet) is kept in `pending_receipt`, with its vendor TLVs, and
  applied when a submit response brings that id (`apply_pending`, `apply_kept`, `sweep_pending`): a
  receipt can overtake the submit_sm_resp. A kept report only applies to a part submitted within
  OVERTAKE_SECONDS of its arrival: an older part would have matched it at once, and a part sent much
  later under a reused id is another message.

Statuses only move forward; a report that changes nothing is still written to the history with
`applied = false`. A message's first final status writes its delivery report to the outbox, in this
same transaction: that is the only place reports are created, so there is one per message.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, SmppProviderConfig
from app.db.tables import Message, MessagePart, OutboxEvent, PendingReceipt, StatusEvent, utcnow
from app.db.upsert import insert_ignore
from app.domain.ids import normalise_upstream_id, receipt_id_candidates
from app.domain.messages import Receipt
from app.domain.status import FINAL, REPORTED, Status, advances, aggregate_parts
from app.events import outbox

log = logging.getLogger("smsgw.receipts")

OVERTAKE_SECONDS = 600.0  # a kept report applies to a part submitted at most this long after it came
_RECENT = timedelta(seconds=120)  # the race of a part committed just after its report was kept
_EPOCH = datetime.min.replace(tzinfo=UTC)
_FINAL_VALUES = frozenset(s.value for s in FINAL)


def _id_formats(settings: Settings) -> dict[str, str]:
    return {p.name: p.receipt_id_format for p in settings.providers if isinstance(p, SmppProviderConfig)}


def _wanted(upstream_id: str) -> list[str]:
    """Every stored id a report's id could stand for, in any format (the SELECT's superset)."""
    return [str(u) for u in receipt_id_candidates(upstream_id, "auto")]


def _submitted(part: MessagePart) -> datetime:
    return part.submitted_at if part.submitted_at is not None else _EPOCH


def _match(receipt: Receipt, wanted: list[str], by_id: dict[str, list[MessagePart]], formats: dict[str, str],
           kept_at: datetime | None = None) -> tuple[list[MessagePart], bool]:
    """(parts this report applies to, whether they are all final already: a duplicate or late one)."""
    near = [p for u in wanted for p in by_id.get(u, ()) if receipt.provider in (None, p.provider)]
    if not near:
        return [], False
    candidates: dict[str, list[str]] = {}  # by id format: one entry unless a webhook spans providers
    found: list[MessagePart] = []
    for first in (True, False):  # `auto` reads the same id first, the other base only if that finds nothing
        for part in near:
            fmt = formats.get(part.provider, "same")
            ids = candidates.get(fmt)
            if ids is None:  # `wanted` is already the `auto` list, its head the `same` id
                ids = candidates[fmt] = (wanted[:1] if fmt == "same" else wanted if fmt == "auto"
                                         else [str(u) for u in receipt_id_candidates(receipt.upstream_id, fmt)])
            if part.upstream_id in (ids[:1] if first else ids[1:]):
                found.append(part)
        if found:
            break
    if receipt.submitted_after is not None:
        found = [p for p in found if p.submitted_at is None or p.submitted_at >= receipt.submitted_after]
    if kept_at is not None:
        low, high = kept_at - _RECENT, kept_at + timedelta(seconds=OVERTAKE_SECONDS)
        found = [p for p in found if p.submitted_at is None or low <= p.submitted_at <= high]
    if not found:
        return [], False
    live = [p for p in found if p.status not in _FINAL_VALUES]
    pool = live or found
    if len(pool) == 1:
        return pool, not live
    newest = max(pool, key=lambda p: (_submitted(p), p.id))
    return [p for p in pool if p.message_sid == newest.message_sid], not live


async def _candidate_parts(session: AsyncSession, wanted: set[str],
                           settings: Settings) -> dict[str, list[MessagePart]]:
    window = utcnow() - timedelta(seconds=settings.receipt_timeout_seconds)
    parts = (await session.scalars(
        select(MessagePart).where(MessagePart.upstream_id.in_(wanted))
        .where(or_(MessagePart.submitted_at.is_(None), MessagePart.submitted_at >= window)))).all()
    by_id: dict[str, list[MessagePart]] = defaultdict(list)
    for part in parts:
        if part.upstream_id is not None:
            by_id[part.upstream_id].append(part)
    return by_id


async def apply_receipts(session: AsyncSession, receipts: Sequence[Receipt], settings: Settings,
                         counts: Counter[str] | None = None, kept: list[int] | None = None) -> list[str]:
    """Apply a batch of reports (no commit). Returns the sids whose status became final; `counts` (when
    given) gains `matched`, `kept` (reports for ids not known yet, kept as pending) and
    `status:<status>:<provider>` for each status change applied; `kept` (when given) gains the ids of
    the `pending_receipt` rows written, for `apply_kept` once this transaction has committed."""
    finals, unmatched = await _apply_batch(session, receipts, settings, counts)
    if unmatched:
        ids = await _keep_pending(session, unmatched, settings)
        if kept is not None:
            kept.extend(ids)
    if counts is not None:
        counts["kept"] += len(unmatched)
    return finals


async def _apply_batch(session: AsyncSession, receipts: Sequence[Receipt], settings: Settings,
                       counts: Counter[str] | None = None,
                       kept_at: Sequence[datetime] | None = None) -> tuple[list[str], list[Receipt]]:
    """Apply what matches; returns (sids that became final, reports that matched nothing)."""
    if not receipts:
        return [], []
    wanted = [_wanted(r.upstream_id) for r in receipts]
    by_id = await _candidate_parts(session, {u for ids in wanted for u in ids}, settings)
    formats = _id_formats(settings)
    matched: list[tuple[Receipt, list[MessagePart]]] = []
    unmatched: list[Receipt] = []
    for i, r in enumerate(receipts):
        hit, _late = _match(r, wanted[i], by_id, formats, kept_at[i] if kept_at is not None else None)
        (matched.append((r, hit)) if hit else unmatched.append(r))

    # Webhooks may name our own MessageSid instead of an upstream id.
    direct: dict[str, Receipt] = {}
    if unmatched and kept_at is None:
        own = set((await session.scalars(
            select(Message.sid).where(Message.sid.in_([r.upstream_id for r in unmatched if r.provider is None]))
        )).all())
        direct = {r.upstream_id: r for r in unmatched if r.upstream_id in own}
        unmatched = [r for r in unmatched if r.upstream_id not in own]

    finals = await _apply(session, matched, direct, settings, counts)
    if counts is not None:
        counts["matched"] += len(matched) + len(direct)
    return finals, unmatched


async def apply_to_parts(session: AsyncSession, reports: Sequence[tuple[int, Receipt]], settings: Settings,
                         counts: Counter[str] | None = None) -> list[str]:
    """Apply answers about known parts (a status poll asked about part `id`; no commit): each goes to
    the part asked about and its siblings with the same upstream id, never to another message that
    holds the id too. Returns the sids whose status became final."""
    if not reports:
        return []
    asked = {p.id: p for p in (await session.scalars(
        select(MessagePart).where(MessagePart.id.in_([pid for pid, _ in reports])))).all()}
    sids = {p.message_sid for p in asked.values()}
    siblings: dict[tuple[str, str | None], list[MessagePart]] = defaultdict(list)
    for part in (await session.scalars(select(MessagePart).where(MessagePart.message_sid.in_(sids)))).all():
        siblings[(part.message_sid, part.upstream_id)].append(part)
    matched = [(r, siblings[(asked[pid].message_sid, asked[pid].upstream_id)]) for pid, r in reports if pid in asked]
    finals = await _apply(session, matched, {}, settings, counts)
    if counts is not None:
        counts["matched"] += len(matched)
    return finals


async def _apply(
    session: AsyncSession,
    matched: list[tuple[Receipt, list[MessagePart]]],
    direct: dict[str, Receipt],
    settings: Settings,
    counts: Counter[str] | None = None,
) -> list[str]:
    now = utcnow()
    sids = {p.message_sid for _, ps in matched for p in ps} | set(direct)
    if not sids:
        return []
    messages = {m.sid: m for m in (await session.scalars(select(Message).where(Message.sid.in_(sids)))).all()}
    all_parts: dict[str, list[MessagePart]] = defaultdict(list)
    for part in (await session.scalars(select(MessagePart).where(MessagePart.message_sid.in_(sids)))).all():
        all_parts[part.message_sid].append(part)

    events: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    finals: list[str] = []
    info = log.isEnabledFor(logging.INFO)

    def settle(msg: Message, r: Receipt, new: Status) -> None:
        applied = advances(Status(msg.status), new)
        events.append({
            "message_sid": msg.sid, "status": r.status.value, "source": r.source, "applied": applied,
            "provider_status_code": r.provider_status_code, "detail": r.error_code and f"err {r.error_code}",
            "created_at": now,
        })
        if info:
            # `status` is the message's status after this report (a long message's parts aggregate);
            # `applied` false: a duplicate or a report that came behind a later status.
            log.info("status", extra={"message_sid": msg.sid, "status": (new if applied else Status(msg.status)).value,
                                      "reported": r.status.value, "applied": applied,
                                      "provider_status_code": r.provider_status_code, "error_code": r.error_code,
                                      "upstream_id": r.upstream_id, "source": r.source})
        if not applied:
            return
        if counts is not None:
            counts[f"status:{new.value}:{msg.provider or '-'}"] += 1
        msg.status = new.value
        msg.updated_at = now
        if r.provider_status_code:
            msg.provider_status_code = r.provider_status_code
        if r.error_code and new is not Status.DELIVERED:
            msg.error_code = r.error_code
        msg.lease_owner = msg.lease_expires_at = msg.due_at = None
        if new in REPORTED:
            finals.append(msg.sid)
            reports.extend(_final_events(msg, new, settings))
        elif new is Status.SENT and msg.callback_url:
            reports.append(outbox.callback_event(url=msg.callback_url, message_sid=msg.sid, status=new,
                                                 to=msg.to_number, sender=msg.from_addr, error_code=None))

    for r, hit in matched:
        for part in hit:
            if advances(Status(part.status), r.status):
                part.status = r.status.value
                part.provider_status_code = r.provider_status_code
                part.error_code = r.error_code
                if r.extra:
                    part.tlvs = {**(part.tlvs or {}), **r.extra}
                if r.status in REPORTED:
                    part.done_at = r.done_at or now
                    part.next_poll_at = None
        for sid in {p.message_sid for p in hit}:
            msg = messages[sid]
            settle(msg, r, aggregate_parts(Status(p.status) for p in all_parts[sid]))
    for sid, r in direct.items():
        settle(messages[sid], r, r.status)

    if events:
        await session.execute(insert(StatusEvent), events)
    if reports:
        await outbox_insert(session, reports)
    return finals


def _final_events(msg: Message, status: Status, settings: Settings) -> Iterable[dict[str, Any]]:
    yield outbox.report_event(
        queue=settings.delivery_report_queue, message_sid=msg.sid, status=status,
        provider_status_code=msg.provider_status_code, channel=msg.channel, to=msg.to_number,
        provider=msg.provider, error_code=msg.error_code,
    )
    if msg.callback_url:
        yield outbox.callback_event(url=msg.callback_url, message_sid=msg.sid, status=status,
                                    to=msg.to_number, sender=msg.from_addr, error_code=msg.error_code)


async def outbox_insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Outbox rows, skipping any whose dedupe_key is already there."""
    await session.execute(insert_ignore(session, OutboxEvent), rows)


def final_outbox_rows(msg: Message, status: Status, settings: Settings) -> list[dict[str, Any]]:
    """The report (and callback) rows for a message that reached `status` by other means (failures)."""
    return list(_final_events(msg, status, settings))


async def _keep_pending(session: AsyncSession, receipts: list[Receipt], settings: Settings) -> list[int]:
    now = utcnow()
    if log.isEnabledFor(logging.INFO):
        for r in receipts:
            log.info("status kept as pending", extra={"upstream_id": r.upstream_id, "provider": r.provider,
                                                      "reported": r.status.value,
                                                      "provider_status_code": r.provider_status_code,
                                                      "source": r.source})
    ttl = timedelta(seconds=settings.pending_receipt_ttl_seconds)
    result = await session.scalars(insert(PendingReceipt).returning(PendingReceipt.id), [
        {
            "provider": r.provider, "upstream_id": normalise_upstream_id(r.upstream_id), "status": r.status.value,
            "provider_status_code": r.provider_status_code, "error_code": r.error_code, "source": r.source,
            "payload": _payload(r), "created_at": now, "expires_at": now + ttl,
        }
        for r in receipts
    ])
    return list(result.all())


def _payload(r: Receipt) -> dict[str, Any]:
    # Everything the report carried (vendor TLVs, the receipt text's fields), so that applying it
    # later gives the part what applying it at once would have.
    payload: dict[str, Any] = {"raw_id": r.upstream_id, "extra": r.extra}
    if r.done_at is not None:
        payload["done_at"] = r.done_at.isoformat()
    if r.submitted_after is not None:
        payload["submitted_after"] = r.submitted_after.isoformat()
    return payload


def _kept_receipt(row: PendingReceipt) -> Receipt:
    payload = dict(row.payload or {})
    raw_id = str(payload.pop("raw_id", row.upstream_id))
    extra = payload.pop("extra", None)
    if extra is None:  # rows kept before the payload had an "extra" key: the rest of it is the extra
        extra = {k: v for k, v in payload.items() if k not in ("done_at", "submitted_after")}
    done_at, after = payload.get("done_at"), payload.get("submitted_after")
    return Receipt(provider=row.provider, upstream_id=raw_id, status=Status(row.status),
                   provider_status_code=row.provider_status_code, source=row.source, error_code=row.error_code,
                   done_at=datetime.fromisoformat(done_at) if isinstance(done_at, str) else None, extra=extra,
                   submitted_after=datetime.fromisoformat(after) if isinstance(after, str) else None)


async def _apply_kept(session: AsyncSession, rows: Sequence[PendingReceipt], settings: Settings,
                      counts: Counter[str] | None = None) -> int:
    """Apply kept reports that now match a part, and remove those from `pending_receipt`; the others
    stay kept as they were. Returns how many were applied."""
    receipts = [_kept_receipt(r) for r in rows]
    _finals, unmatched = await _apply_batch(session, receipts, settings, counts, [r.created_at for r in rows])
    left = {id(r) for r in unmatched}
    done = [row.id for row, r in zip(rows, receipts, strict=True) if id(r) not in left]
    if done:
        await session.execute(delete(PendingReceipt).where(PendingReceipt.id.in_(done)))
    return len(done)


async def apply_kept(session: AsyncSession, ids: Sequence[int], settings: Settings,
                     counts: Counter[str] | None = None) -> int:
    """Apply these kept reports if their parts exist now (no commit); returns how many were applied.

    Call in a transaction of its own, after the one that kept them committed. The report's transaction
    and the one recording its part's submit response may each miss the other's rows (neither has
    committed when the other reads); whichever commits second sees the first's rows in its check after
    committing (this, or the dispatcher's `apply_pending` after its commit), so one of the two applies
    the report. The rows are locked (waiting, not skipped) so that a check running alongside the other
    side's finishes first: it applies the report or leaves it for the other, never both or neither.
    """
    if not ids:
        return 0
    rows = (await session.scalars(
        select(PendingReceipt).where(PendingReceipt.id.in_(list(ids))).order_by(PendingReceipt.id)
        .with_for_update())).all()
    if not rows:
        return 0
    return await _apply_kept(session, rows, settings, counts)


async def apply_pending(session: AsyncSession, provider: str, upstream_ids: Iterable[str],
                        settings: Settings, counts: Counter[str] | None = None) -> None:
    """Apply reports that arrived before these ids were known (no commit). Call in a transaction of its
    own after the one that recorded the parts has committed (see `apply_kept` for why)."""
    formats = _id_formats(settings)
    wanted = {c for u in upstream_ids for c in _kept_ids(u, formats.get(provider, "same"))}
    if not wanted:
        return
    rows = (await session.scalars(
        select(PendingReceipt)
        .where(PendingReceipt.upstream_id.in_(wanted))
        .where(or_(PendingReceipt.provider.is_(None), PendingReceipt.provider == provider))
        .where(PendingReceipt.created_at >= utcnow() - timedelta(seconds=OVERTAKE_SECONDS))
        .order_by(PendingReceipt.id)
        .with_for_update()  # waits for an `apply_kept` of the same report to finish (see there)
    )).all()
    if not rows:
        return
    await _apply_kept(session, rows, settings, counts)


def _kept_ids(submit_id: str, id_format: str) -> list[str]:
    """How a report for this submit id is kept (its id as the receipt writes it, normalised)."""
    value = normalise_upstream_id(submit_id)
    if id_format == "hex" and value.isdigit() and len(value) <= 30:
        return [format(int(value), "x")]
    if id_format == "decimal" and value and set(value) <= set("0123456789abcdef") and len(value) <= 24:
        return [str(int(value, 16))]
    if id_format == "auto":
        return _wanted(submit_id)
    return [value]


async def sweep_pending(session: AsyncSession, settings: Settings, limit: int = 1000,
                        counts: Counter[str] | None = None) -> int:
    """Apply kept reports whose id has appeared since (no commit).

    The backstop for a kept report that neither `apply_kept` nor `apply_pending` applied (the process
    stopped between a commit and its check, or the check failed). Only
    reports kept in the last OVERTAKE_SECONDS can still match; recent ones (two minutes) are tried
    in every form their id may take, older ones only if a part has their exact id, so the sweep stays
    cheap when many reports for unknown ids pile up.
    """
    now = utcnow()
    recent = now - _RECENT
    rows = list((await session.scalars(
        select(PendingReceipt).where(PendingReceipt.created_at >= recent).order_by(PendingReceipt.id).limit(limit)
        .with_for_update(skip_locked=True)  # rows a check is applying right now are its own
    )).all())
    rows += (await session.scalars(
        select(PendingReceipt)
        .where(PendingReceipt.created_at < recent,
               PendingReceipt.created_at >= now - timedelta(seconds=OVERTAKE_SECONDS))
        .where(PendingReceipt.upstream_id.in_(
            select(MessagePart.upstream_id).where(MessagePart.upstream_id.is_not(None),
                                                  MessagePart.status.not_in([s.value for s in FINAL]))))
        .order_by(PendingReceipt.id).limit(limit)
        .with_for_update(of=PendingReceipt, skip_locked=True)
    )).all()
    if not rows:
        return 0
    wanted = {c for r in rows for c in _wanted(r.upstream_id)}
    known = set((await session.scalars(
        select(MessagePart.upstream_id).where(MessagePart.upstream_id.in_(wanted),
                                              MessagePart.status.not_in([s.value for s in FINAL])))).all())
    ready = [r for r in rows if known.intersection(_wanted(r.upstream_id))]
    if not ready:
        return 0
    return await _apply_kept(session, ready, settings, counts)


async def purge_expired_pending(session: AsyncSession) -> int:
    result = await session.execute(delete(PendingReceipt).where(PendingReceipt.expires_at < utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)
