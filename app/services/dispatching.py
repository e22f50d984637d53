"""The dispatcher's unit of work: claiming due messages, and recording the outcomes of submit attempts.

Each call is one transaction, committed here; the dispatcher (app/dispatch/) never holds one while it
talks to an upstream. Recording is set-based: a batch of outcomes costs one statement per kind of
change, not one per message (app/db/dispatch_store.py).

What an outcome writes:
- `sent`: the message row (status, provider, `sent_at`, which is its history entry), one row per part
  with the upstream's id (receipts match on it), and a StatusCallback call when it has one;
- `retry`: the message due again after a backoff, and a history row saying why;
- `failed`: the message final (`done_at` and the rest of its history entry on its row), its delivery
  report and callback (services/status_change.py decides those, as it does for receipts);
- a long message that stopped part-way also keeps each part's outcome (`_record_parts`).
Only messages still leased to this dispatcher change: one whose lease expired meanwhile is another's.
After the commit, reports kept for the ids just recorded are applied (services/kept_receipts.py).
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import dispatch_store as store
from app.db.tables import utcnow
from app.domain.dispatching import Claimed, Outcome, OutcomeKind
from app.domain.ids import UpstreamId, normalise_upstream_id
from app.domain.messages import Receipt
from app.domain.routing import backoff_seconds
from app.domain.status import ReportCounts, Status
from app.services import kept_receipts
from app.services.receipts import apply_receipts, outbox_insert
from app.services.status_change import Recipient, history_row, outbox_rows

log = logging.getLogger("smsgw.dispatch")


@dataclass(slots=True)
class Recorded:
    """What a recorded batch changed, for the metrics and the publishers."""

    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, provider) → messages
    outbox: int = 0  # outbox rows written
    kept_applied: ReportCounts = field(default_factory=ReportCounts)  # kept reports applied after the commit


async def claim(sessions: async_sessionmaker[AsyncSession], settings: Settings, owner: str,
                limit: int) -> list[Claimed]:
    now = utcnow()
    async with sessions() as s:
        claimed = await store.claim_due(s, owner, limit, now, timedelta(seconds=settings.dispatch_lease_seconds))
        scheduled = [history_row(c.sid, Status.QUEUED, "scheduler", now) for c in claimed if c.was_scheduled]
        if scheduled:
            await store.insert_history(s, scheduled)
        await s.commit()
    return claimed


async def record(sessions: async_sessionmaker[AsyncSession], settings: Settings, owner: str,
                 batch: Sequence[Outcome], poll_after: dict[str, float],
                 committed: Callable[[], None] = lambda: None) -> Recorded:
    """Record `batch` in one transaction (retried by the caller on failure), then apply the reports kept
    for the ids it recorded. `poll_after`: the seconds before the first status query, for providers
    that are polled. `committed` runs as soon as the transaction has committed: before its connection
    goes back to the pool and before the kept reports' transaction (together a few turns of a loaded
    event loop, which the dispatcher's window would otherwise wait for)."""
    now = utcnow()
    done = Recorded()
    history: list[dict[str, Any]] = []
    out_rows: list[dict[str, Any]] = []
    accepted: list[tuple[str, list[str]]] = []  # (provider, upstream ids) recorded here
    for o in batch:
        if o.kind is OutcomeKind.RETRY and o.msg.attempts >= settings.retry_max_attempts:
            o.kind, o.detail = OutcomeKind.FAILED, f"gave up after {o.msg.attempts} attempts: {o.detail}"
    async with sessions() as s:
        sent: dict[str, list[Outcome]] = defaultdict(list)
        for o in batch:
            if o.kind is OutcomeKind.SENT:
                sent[o.provider or ""].append(o)
        for provider, group in sent.items():
            await _record_sent(s, settings, owner, provider, group, now, poll_after.get(provider), out_rows,
                               accepted, done)
        retries = [o for o in batch if o.kind is OutcomeKind.RETRY]
        if retries:
            await _record_retries(s, settings, owner, retries, now, history, accepted)
        failures = [o for o in batch if o.kind is OutcomeKind.FAILED]
        if failures:
            await _record_failures(s, settings, owner, failures, now, out_rows, accepted, done)
        if history:
            await store.insert_history(s, history)
        if out_rows:
            await outbox_insert(s, out_rows)
        await s.commit()
        done.outbox = len(out_rows)
        committed()
    accepted = [(provider, ids) for provider, ids in accepted if ids]
    if accepted:
        try:
            done.kept_applied = await kept_receipts.recheck_submitted(sessions, accepted, settings)
        except Exception:
            log.exception("applying reports kept for %d recorded submits failed: left to the sweep",
                          sum(len(ids) for _, ids in accepted))
    return done


def _recipient(o: Outcome) -> Recipient:
    m = o.msg
    return Recipient(m.sid, m.channel, m.to, m.sender, o.provider, m.callback)


async def _record_sent(s: AsyncSession, settings: Settings, owner: str, provider: str, group: list[Outcome],
                       now: datetime, poll_after: float | None, out_rows: list[dict[str, Any]],
                       accepted: list[tuple[str, list[str]]], done: Recorded) -> None:
    def held(o: Outcome) -> UpstreamId | None:
        """The one id of a one-part message not polled and with nothing from an earlier attempt: kept on
        the message row itself, no part row (Message.upstream_id)."""
        ids = o.result.upstream_ids if o.result else ()
        return normalise_upstream_id(ids[0]) if len(ids) == 1 and poll_after is None and o.msg.progress is None \
            and o.msg.attempts == 1 else None

    owned = await store.mark_sent(s, [(o.msg.sid, held(o)) for o in group], provider, owner, now)
    group = [o for o in group if o.msg.sid in owned]
    if not group:
        return
    # Parts accepted on an earlier attempt keep their rows (and any receipt they already got).
    await store.delete_unaccepted_parts(s, [o.msg.sid for o in group if o.msg.attempts > 1])
    poll_at = now + timedelta(seconds=poll_after) if poll_after is not None else None
    await store.insert_parts(s, [
        {"message_sid": o.msg.sid, "part_no": i + 1, "provider": provider, "upstream_id": normalise_upstream_id(uid),
         "status": Status.SENT.value, "submitted_at": now, "next_poll_at": poll_at,
         "provider_status_code": o.result.provider_status_code if o.result else None}
        for o in group if held(o) is None
        for i, uid in enumerate(o.result.upstream_ids if o.result else ()) if i + 1 not in o.accepted_before()])
    for o in group:
        out_rows += outbox_rows(_recipient(o), Status.SENT, report_queue=settings.delivery_report_queue,
                                provider_status_code=None, error_code=None, at=now)
    done.statuses[(Status.SENT.value, provider)] += len(group)
    # Receipts that overtook these submit responses are applied after the commit.
    accepted.append((provider, [str(u) for o in group for u in (o.result.upstream_ids if o.result else ())]))


async def _record_retries(s: AsyncSession, settings: Settings, owner: str, retries: list[Outcome], now: datetime,
                          history: list[dict[str, Any]], accepted: list[tuple[str, list[str]]]) -> None:
    delays = {o.msg.sid: o.retry_after or backoff_seconds(o.msg.attempts, settings.retry_base_seconds,
                                                          settings.retry_max_seconds, random.random())
              for o in retries}
    owned = await store.update_owned(s, [
        {"sid": o.msg.sid, "status": Status.QUEUED.value, "due_at": now + timedelta(seconds=delays[o.msg.sid]),
         "lease_owner": None, "lease_expires_at": None, "provider_status_code": o.code, "updated_at": now}
        for o in retries], owner)
    for o in retries:
        if o.msg.sid in owned:
            history.append(history_row(o.msg.sid, Status.QUEUED, f"provider:{o.provider or '-'}", now, code=o.code,
                                       detail=f"retry in {delays[o.msg.sid]:.1f}s: {o.detail}"))
            await _record_parts(s, o, now, accepted)


async def _record_failures(s: AsyncSession, settings: Settings, owner: str, failures: list[Outcome],
                           now: datetime, out_rows: list[dict[str, Any]], accepted: list[tuple[str, list[str]]],
                           done: Recorded) -> None:
    owned = await store.update_owned(s, [
        {"sid": o.msg.sid, "status": Status.FAILED.value, "due_at": None, "lease_owner": None,
         "lease_expires_at": None, "provider": o.provider, "provider_status_code": o.code, "error_code": o.code,
         "updated_at": now, "done_at": now, "done_source": f"provider:{o.provider or '-'}", "done_detail": o.detail}
        for o in failures], owner)
    for o in failures:
        if o.msg.sid not in owned:
            continue
        await _record_parts(s, o, now, accepted)
        out_rows += outbox_rows(_recipient(o), Status.FAILED, report_queue=settings.delivery_report_queue,
                                provider_status_code=o.code, error_code=o.code, at=now)
        done.statuses[(Status.FAILED.value, o.provider or "-")] += 1


async def _record_parts(s: AsyncSession, o: Outcome, now: datetime, accepted: list[tuple[str, list[str]]]) -> None:
    """The parts of a long message that stopped part-way: accepted ones with their ids, the others
    `queued` for the next attempt, or `failed` (the refused one) / `canceled` when the message failed.
    The ids accepted on this attempt go to `accepted` (their kept reports are applied after commit)."""
    progress = o.progress or o.msg.progress
    if progress is None:
        return
    before = o.accepted_before()
    await store.delete_unaccepted_parts(s, [o.msg.sid])
    refused = min((n for n in range(1, progress.total + 1) if n not in progress.accepted), default=None)
    rows: list[dict[str, Any]] = []
    for n in range(1, progress.total + 1):
        if n in before:
            continue
        uid = progress.accepted.get(n)
        if uid is not None:
            status, code = Status.SENT, None
        elif o.kind is OutcomeKind.FAILED:
            status, code = (Status.FAILED, o.code) if n == refused else (Status.CANCELED, None)
        else:
            status, code = Status.QUEUED, o.code if n == refused else None
        rows.append({"message_sid": o.msg.sid, "part_no": n, "provider": progress.provider,
                     "upstream_id": normalise_upstream_id(uid) if uid is not None else None,
                     "status": status.value, "provider_status_code": code,
                     "submitted_at": now if uid is not None else None, "concat_ref": progress.reference})
    await store.insert_parts(s, rows)
    if o.kind is OutcomeKind.FAILED:
        await store.cancel_queued_parts(s, o.msg.sid)
    accepted.append((progress.provider, [str(uid) for n, uid in progress.accepted.items() if n not in before]))


async def release(sessions: async_sessionmaker[AsyncSession], owner: str, sids: Sequence[str]) -> int:
    """Give back messages leased to `owner` and never started: due again now, for any dispatcher."""
    async with sessions() as s:
        n = await store.release(s, owner, sids, utcnow())
        await s.commit()
    return n


async def renew(sessions: async_sessionmaker[AsyncSession], settings: Settings, owner: str,
                sids: Sequence[str]) -> set[str]:
    """Lease again, for a whole lease from now, messages handed to `owner` and not started yet; returns
    those still its own (the others it must not start)."""
    async with sessions() as s:
        renewed = await store.renew_leases(s, owner, sids, utcnow(),
                                           timedelta(seconds=settings.dispatch_lease_seconds))
        await s.commit()
    return renewed


# -- housekeeping (each its own transaction) ---------------------------------------------------------
async def release_expired_leases(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Messages whose claimer died: due again now (this is the resubmit window)."""
    async with sessions() as s:
        n = await store.release_expired_leases(s, utcnow())
        await s.commit()
    return n


TIMEOUT_SWEEP = "receipt-timeout"


async def expire_unreceipted(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                             scan: int = 1000, rounds: int = 50) -> tuple[int, ReportCounts]:
    """Messages `sent` longer than `receipt_timeout_seconds` with no final receipt (the upstream lost
    them, or never sends receipts) become undelivered with code NO_RECEIPT, and get their report.

    No index says which messages are still `sent` (that would make every final report's UPDATE a
    non-HOT one, tables.Message): the sweep walks messages in the order they were sent, `scan` at a
    time and up to `rounds` times a run, from its mark (sweep_mark), which it moves past every message
    it has seen final or made undelivered. One still `sent` but changed since the cutoff, or locked by
    a report being applied, holds the mark (the next run looks at it again). One replica sweeps at a
    time: the one holding the mark's lock."""
    cutoff = utcnow() - timedelta(seconds=settings.receipt_timeout_seconds)
    counts: ReportCounts = ReportCounts()
    expired, scan_from, held = 0, None, False
    for _ in range(rounds):  # a transaction each, so that no lock is held for long
        async with sessions() as s:
            mark = await store.lock_mark(s, TIMEOUT_SWEEP)
            if mark is None:
                break  # another replica is sweeping
            mark_to = mark
            rows = await store.scan_sent(s, scan_from or mark, cutoff, scan)
            done = set(await store.lock_unreceipted(s, [r[0] for r in rows if r[1] == Status.SENT.value], cutoff))
            if done:
                await apply_receipts(s, [Receipt(provider=None, upstream_id=UpstreamId(sid), status=Status.UNDELIVERED,
                                                 provider_status_code="NO_RECEIPT", source="receipt-timeout",
                                                 error_code="NO_RECEIPT") for sid in sorted(done)], settings, counts)
                expired += len(done)
            for sid, status, sent_at, _updated in rows:
                held = held or (status == Status.SENT.value and sid not in done)
                if not held:  # the mark stops before the first message still waiting
                    mark_to = (sent_at, sid)
            if mark_to != mark:
                await store.move_mark(s, TIMEOUT_SWEEP, mark_to, utcnow())
            await s.commit()
        if len(rows) < scan:
            break
        scan_from = (rows[-1][2], rows[-1][0])
    return expired, counts


async def purge_idempotency_keys(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """Forget Idempotency-Keys older than `idempotency_ttl_seconds`."""
    async with sessions() as s:
        n = await store.delete_idempotency_before(
            s, utcnow() - timedelta(seconds=settings.idempotency_ttl_seconds))
        await s.commit()
    return n
