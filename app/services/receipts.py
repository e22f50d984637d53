"""Applying status reports (SMPP receipts, webhooks, status polls) to messages, many at a time.

One call handles a batch in a handful of round trips: one SELECT for the parts the reports name
(exact ids and, failing those, the same id in the other base), one for their messages and sibling
parts, then the updates, history rows, outbox rows and pending-receipt rows in one flush.

Rules:
- A report for an id nobody has (yet) is kept in `pending_receipt` and applied when a submit
  response brings that id (`apply_pending`): a receipt can overtake the submit_sm_resp.
- Several parts may share one upstream id (providers that give a long message one id and one
  receipt): the report applies to all of them.
- Statuses only move forward; a report that changes nothing is still written to the history with
  `applied = false`. A message's first final status writes its delivery report to the outbox, in
  this same transaction: that is the only place reports are created, so there is one per message.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.tables import Message, MessagePart, OutboxEvent, PendingReceipt, StatusEvent, utcnow
from app.db.upsert import insert_ignore
from app.domain.ids import alternate_upstream_ids, normalise_upstream_id
from app.domain.messages import Receipt
from app.domain.status import REPORTED, Status, advances, aggregate_parts
from app.events import outbox

log = logging.getLogger("smsgw.receipts")


def _candidates(upstream_id: str) -> list[str]:
    return [normalise_upstream_id(upstream_id), *alternate_upstream_ids(upstream_id)]


def _match(receipt: Receipt, by_id: dict[str, list[MessagePart]]) -> list[MessagePart]:
    """Parts this receipt names: the exact id first; the other base only when that finds nothing."""
    exact, *alternates = _candidates(receipt.upstream_id)
    for candidate in (exact, *alternates):
        parts = [p for p in by_id.get(candidate, []) if receipt.provider in (None, p.provider)]
        if parts:
            return parts
    return []


async def apply_receipts(session: AsyncSession, receipts: Sequence[Receipt], settings: Settings,
                         counts: Counter[str] | None = None) -> list[str]:
    """Apply a batch of reports (no commit). Returns the sids whose status became final; `counts` (when
    given) gains `matched`, `kept` (reports for ids not known yet, kept as pending) and
    `status:<status>:<provider>` for each status change applied."""
    if not receipts:
        return []
    wanted = {c for r in receipts for c in _candidates(r.upstream_id)}
    parts = (await session.scalars(select(MessagePart).where(MessagePart.upstream_id.in_(wanted)))).all()
    by_id: dict[str, list[MessagePart]] = defaultdict(list)
    for part in parts:
        if part.upstream_id is not None:
            by_id[part.upstream_id].append(part)

    matched: list[tuple[Receipt, list[MessagePart]]] = []
    unmatched: list[Receipt] = []
    for r in receipts:
        hit = _match(r, by_id)
        (matched.append((r, hit)) if hit else unmatched.append(r))

    # Webhooks may name our own MessageSid instead of an upstream id.
    direct: dict[str, Receipt] = {}
    if unmatched:
        own = set((await session.scalars(
            select(Message.sid).where(Message.sid.in_([r.upstream_id for r in unmatched if r.provider is None]))
        )).all())
        direct = {r.upstream_id: r for r in unmatched if r.upstream_id in own}
        unmatched = [r for r in unmatched if r.upstream_id not in own]

    finals = await _apply(session, matched, direct, settings, counts)
    if unmatched:
        await _keep_pending(session, unmatched, settings)
    if counts is not None:
        counts["matched"] += len(matched) + len(direct)
        counts["kept"] += len(unmatched)
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


async def _keep_pending(session: AsyncSession, receipts: list[Receipt], settings: Settings) -> None:
    now = utcnow()
    if log.isEnabledFor(logging.INFO):
        for r in receipts:
            log.info("status kept as pending", extra={"upstream_id": r.upstream_id, "provider": r.provider,
                                                      "reported": r.status.value,
                                                      "provider_status_code": r.provider_status_code,
                                                      "source": r.source})
    ttl = timedelta(seconds=settings.pending_receipt_ttl_seconds)
    await session.execute(insert(PendingReceipt), [
        {
            "provider": r.provider, "upstream_id": normalise_upstream_id(r.upstream_id), "status": r.status.value,
            "provider_status_code": r.provider_status_code, "error_code": r.error_code, "source": r.source,
            "payload": {"raw_id": r.upstream_id, **r.extra} if r.extra else {"raw_id": r.upstream_id},
            "created_at": now, "expires_at": now + ttl,
        }
        for r in receipts
    ])


async def _apply_kept(session: AsyncSession, rows: Sequence[PendingReceipt], settings: Settings,
                      counts: Counter[str] | None = None) -> None:
    """Apply kept reports and remove them from `pending_receipt`."""
    receipts = [
        Receipt(provider=r.provider, upstream_id=str((r.payload or {}).get("raw_id", r.upstream_id)),
                status=Status(r.status), provider_status_code=r.provider_status_code, source=r.source,
                error_code=r.error_code)
        for r in rows
    ]
    await session.execute(delete(PendingReceipt).where(PendingReceipt.id.in_([r.id for r in rows])))
    await apply_receipts(session, receipts, settings, counts)


async def apply_pending(session: AsyncSession, provider: str, upstream_ids: Iterable[str],
                        settings: Settings, counts: Counter[str] | None = None) -> None:
    """Apply reports that arrived before these ids were known (no commit). Call after the parts exist."""
    wanted = {c for u in upstream_ids for c in _candidates(u)}
    if not wanted:
        return
    rows = (await session.scalars(
        select(PendingReceipt)
        .where(PendingReceipt.upstream_id.in_(wanted))
        .where(or_(PendingReceipt.provider.is_(None), PendingReceipt.provider == provider))
        .order_by(PendingReceipt.id)
    )).all()
    if not rows:
        return
    await _apply_kept(session, rows, settings, counts)


async def sweep_pending(session: AsyncSession, settings: Settings, limit: int = 1000,
                        counts: Counter[str] | None = None) -> int:
    """Apply kept reports whose id has appeared since (no commit).

    Closes the race where a receipt is stored as pending while the transaction recording its submit
    response is still open: `apply_pending` in that transaction cannot see it, this sweep does. Recent
    rows are matched in either base (hex/decimal); older ones by their exact id only, so the sweep
    stays cheap when many reports for unknown ids pile up.
    """
    recent = utcnow() - timedelta(seconds=120)
    rows = list((await session.scalars(
        select(PendingReceipt).where(PendingReceipt.created_at >= recent).order_by(PendingReceipt.id).limit(limit)
    )).all())
    rows += (await session.scalars(
        select(PendingReceipt)
        .where(PendingReceipt.created_at < recent)
        .where(PendingReceipt.upstream_id.in_(select(MessagePart.upstream_id).where(MessagePart.upstream_id.is_not(None))))
        .order_by(PendingReceipt.id).limit(limit)
    )).all()
    if not rows:
        return 0
    wanted = {c for r in rows for c in _candidates(r.upstream_id)}
    known = set((await session.scalars(
        select(MessagePart.upstream_id).where(MessagePart.upstream_id.in_(wanted)))).all())
    ready = [r for r in rows if known.intersection(_candidates(r.upstream_id))]
    if not ready:
        return 0
    await _apply_kept(session, ready, settings, counts)
    return len(ready)


async def purge_expired_pending(session: AsyncSession) -> int:
    result = await session.execute(delete(PendingReceipt).where(PendingReceipt.expires_at < utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)
