"""The dispatcher: claims due messages, sends them through their route's providers, records outcomes.

Claim: one UPDATE … WHERE sid IN (SELECT … WHERE due_at <= now … FOR UPDATE SKIP LOCKED) RETURNING,
so several replicas on one PostgreSQL database never take the same message. A claim sets the
status `sending` and a lease. Outcomes are written in batches by one writer (one transaction for
many messages), never inside the transaction that claimed them: no upstream call happens with a
transaction open.

Where a resubmit can happen (at-least-once towards the upstream):
- the process dies after a submit was accepted upstream but before the writer committed the
  outcome: the lease expires (`dispatch_lease_seconds`) and another dispatcher sends it again;
- SMPP only: a submit_sm written but never answered (timeout, connection lost) is retried, because
  SMPP has no way to ask "did you get it?" without the id. Counted in `smsgw_resubmits_total`.
HTTP providers never resubmit an unanswered request: the message fails with `UNKNOWN_OUTCOME` and
the history says why (their ids come only in the answer, so no status query can resolve it).

A long message that stops part-way (part 2 of 3 throttled, the bind lost after part 1) keeps each
part's outcome in `message_part`: the accepted parts with their ids (receipts match them), the rest
`queued`. Its next attempt goes to the same provider, sends only the parts not accepted, with the
same concatenation reference (PartProgress), so the handset joins one message and nothing is billed
twice. A message failed part-way keeps its accepted parts too (`failed` / `canceled` for the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter as CounterType
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tables import IdempotencyRecord, Message, MessagePart, StatusEvent, utcnow
from app.dispatch.poller import first_poll_delay
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid, UpstreamId, normalise_upstream_id
from app.domain.routing import Route, backoff_seconds, providers_for
from app.domain.status import Status
from app.logs import message_sid_var
from app.metrics import Metrics
from app.providers.base import (
    OutboundMessage,
    PartProgress,
    PermanentError,
    Provider,
    ProviderError,
    Receipt,
    RetryableError,
    RouteError,
    SubmitResult,
    UnknownOutcomeError,
)
from app.services import outbox_rows as outbox
from app.services.receipts import (
    apply_pending,
    apply_receipts,
    outbox_insert,
    purge_expired_pending,
    sweep_pending,
)

log = logging.getLogger("smsgw.dispatch")


@dataclass(slots=True)
class Claimed:
    sid: str
    to: str
    sender: str | None
    body: str
    encoding: str
    mode: str
    flash: bool
    validity: int | None
    channel: str
    attempts: int
    callback: str | None
    was_scheduled: bool
    progress: PartProgress | None = None  # parts accepted on an earlier attempt


@dataclass(slots=True)
class Outcome:
    msg: Claimed
    kind: str  # sent | retry | failed
    provider: str | None
    result: SubmitResult | None = None
    code: str | None = None
    detail: str | None = None
    retry_after: float | None = None
    progress: PartProgress | None = None  # how far a long message got on this attempt, if it stopped part-way


class Dispatcher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 providers: dict[str, Provider], metrics: Metrics, owner: str,
                 on_outbox: Any = None) -> None:
        self._sessions = sessions
        self._settings = settings
        self._providers = providers
        self._metrics = metrics
        self._owner = owner
        self._on_outbox = on_outbox or (lambda: None)
        self._routes = [Route(r.channel, r.prefix, tuple(r.providers)) for r in settings.routes]
        self._sems = {n: asyncio.Semaphore(max(1, p.max_in_flight)) for n, p in providers.items()}
        self._capacity = max(1, sum(p.max_in_flight for p in providers.values()))
        self._polled = {p.name for p in settings.providers if first_poll_delay(p) is not None}
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._flush = asyncio.Event()
        self._in_flight = 0
        self._last_claimed = float("-inf")  # loop time of the last claim that found messages
        self._outcomes: list[Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._runners: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._runners = [asyncio.create_task(self._claim_loop(), name="dispatch-claim"),
                         asyncio.create_task(self._write_loop(), name="dispatch-write"),
                         asyncio.create_task(self._housekeeping_loop(), name="dispatch-housekeeping")]

    async def stop(self) -> None:
        """Stop claiming, let submits in flight finish (up to 10 s), record their outcomes."""
        self._stopping = True
        self._wake.set()
        self._room.set()
        claim, write, _housekeeping = self._runners
        await asyncio.wait([claim], timeout=15)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        self._flush.set()
        await asyncio.wait([write], timeout=30)
        for t in self._runners:
            if not t.done():
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def wake(self) -> None:
        self._wake.set()

    # -- claiming ---------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        idle = 0.05
        while not self._stopping:
            limit = min(self._settings.dispatch_batch, 2 * self._capacity - self._in_flight)
            if limit < max(1, min(self._settings.dispatch_batch, self._capacity) // 4):
                self._room.clear()
                await self._room.wait()
                continue
            try:
                claimed = await self.claim(limit)
            except Exception:  # database down: keep trying, slowly
                log.exception("claim failed")
                await asyncio.sleep(1.0)
                continue
            for msg in claimed:
                self._in_flight += 1
                task = asyncio.create_task(self._send(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if claimed:
                idle = 0.05
                self._last_claimed = asyncio.get_running_loop().time()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)
            idle = min(idle * 2, 1.0)

    async def claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        due = (select(Message.sid)
               .where(Message.due_at.is_not(None), Message.due_at <= now)
               .order_by(Message.due_at).limit(limit)
               .with_for_update(skip_locked=True))  # ignored by SQLite, which has one writer anyway
        stmt = (update(Message).where(Message.sid.in_(due.scalar_subquery()))
                .values(status=Status.SENDING.value, lease_owner=self._owner,
                        lease_expires_at=now + timedelta(seconds=self._settings.dispatch_lease_seconds),
                        due_at=None, attempts=Message.attempts + 1, updated_at=now)
                .returning(Message.sid, Message.to_number, Message.from_addr, Message.full_body, Message.encoding,
                           Message.long_message_mode, Message.flash, Message.validity_period, Message.channel,
                           Message.attempts, Message.callback_url, Message.send_at))
        async with self._sessions() as s:
            rows = (await s.execute(stmt, execution_options={"synchronize_session": False})).all()
            claimed = [Claimed(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], int(r[9]), r[10],
                               r[11] is not None and int(r[9]) == 1) for r in rows]
            await self._load_progress(s, claimed)
            scheduled = [c for c in claimed if c.was_scheduled]
            if scheduled:
                await s.execute(insert(StatusEvent), [
                    {"message_sid": c.sid, "status": Status.QUEUED.value, "source": "scheduler", "applied": True,
                     "created_at": now} for c in scheduled])
            await s.commit()
        return claimed

    @staticmethod
    async def _load_progress(s: AsyncSession, claimed: list[Claimed]) -> None:
        """Parts accepted on an earlier attempt, for messages tried before (the only ones that can have any)."""
        again = {c.sid: c for c in claimed if c.attempts > 1}
        if not again:
            return
        rows = (await s.execute(
            select(MessagePart.message_sid, MessagePart.part_no, MessagePart.provider, MessagePart.upstream_id,
                   MessagePart.concat_ref)
            .where(MessagePart.message_sid.in_(list(again))))).all()
        by_sid: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            by_sid[row[0]].append(row)
        for sid, parts in by_sid.items():
            accepted = {int(p[1]): UpstreamId(p[3]) for p in parts if p[3] is not None}
            if accepted:
                reference = next((int(p[4]) for p in parts if p[4] is not None), None)
                again[sid].progress = PartProgress(parts[0][2], reference, len(parts), accepted)

    # -- sending ----------------------------------------------------------------------------
    async def _send(self, msg: Claimed) -> None:
        # Its own task: whatever a provider logs while submitting carries the message's sid.
        message_sid_var.set(msg.sid)
        try:
            outcome = await self._try_route(msg)
        except Exception as exc:  # a bug in a provider must not lose the message
            log.exception("submit crashed", extra={"message_sid": msg.sid})
            outcome = Outcome(msg, "retry", None, code="INTERNAL", detail=type(exc).__name__)
        self._outcomes.append(outcome)
        # At once: an answered submit not yet recorded is what a crash would send twice. Outcomes that
        # arrive while a write is in progress go together in the next one (group commit).
        self._flush.set()

    async def _try_route(self, msg: Claimed) -> Outcome:
        names = providers_for(self._routes, msg.channel, msg.to)
        if not names:
            return Outcome(msg, "failed", None, code="NO_ROUTE", detail=f"no route for channel {msg.channel!r}")
        if msg.progress is not None:
            # Its first parts are with that provider: the rest must follow them there, never fail over.
            names = (msg.progress.provider,)
        out = OutboundMessage(
            sid=MessageSid(msg.sid), to=msg.to, sender=msg.sender, body=msg.body, encoding=Encoding(msg.encoding),
            long_message_mode=LongMessageMode(msg.mode), flash=msg.flash, validity_period=msg.validity,
            attempt=msg.attempts, progress=msg.progress,
        )
        unavailable: list[str] = []
        last: ProviderError | None = None
        retry: Outcome | None = None
        for name in names:
            provider = self._providers.get(name)
            if provider is None or not provider.is_available():
                unavailable.append(name)
                continue
            loop = asyncio.get_running_loop()
            async with self._sems[name]:
                started = loop.time()
                try:
                    result = await provider.submit(out)
                except RouteError as exc:
                    self._metrics.submit_errors.labels(name, "route").inc()
                    if exc.progress is not None:  # parts are out there: no other provider may send the rest
                        return Outcome(msg, "failed", name, code=exc.code, detail=_parts_detail(exc),
                                       progress=exc.progress)
                    last = exc
                    continue
                except RetryableError as exc:
                    # Down or busy: the next provider of the route may take it now; if none does, retry later.
                    self._metrics.submit_errors.labels(name, "retry").inc()
                    if exc.progress is not None:
                        return Outcome(msg, "retry", name, code=exc.code, detail=_parts_detail(exc),
                                       retry_after=exc.retry_after, progress=exc.progress)
                    retry = retry or Outcome(msg, "retry", name, code=exc.code, detail=exc.message,
                                             retry_after=exc.retry_after)
                    continue
                except PermanentError as exc:
                    self._metrics.submit_errors.labels(name, "permanent").inc()
                    return Outcome(msg, "failed", name, code=exc.code, detail=_parts_detail(exc),
                                   progress=exc.progress)
                except UnknownOutcomeError as exc:
                    self._metrics.submit_errors.labels(name, "unknown").inc()
                    if provider.type == "smpp":
                        self._metrics.resubmits.labels(name).inc()
                        return Outcome(msg, "retry", name, code=exc.code,
                                       detail=f"no answer to submit_sm, resubmitting: {_parts_detail(exc)}",
                                       progress=exc.progress)
                    return Outcome(msg, "failed", name, code="UNKNOWN_OUTCOME",
                                   detail=f"request sent but no answer ({exc.code}); not resubmitted to avoid "
                                          f"a duplicate")
                self._metrics.submit_latency.labels(name).observe(loop.time() - started)
                return Outcome(msg, "sent", name, result=result)
        if retry is not None:
            return retry
        if unavailable:
            return Outcome(msg, "retry", unavailable[0], code="PROVIDER_UNAVAILABLE",
                           detail="no provider of the route is connected: " + ", ".join(unavailable))
        assert last is not None
        return Outcome(msg, "failed", names[-1], code=last.code, detail=f"every provider refused: {last.message}")

    # -- recording --------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        # Ends by itself once stopping and drained (not by cancel: Python 3.11's wait_for can swallow one).
        while not (self._stopping and not self._outcomes and not self._tasks):
            if not self._outcomes:
                self._flush.clear()
                # Each outcome and stop() set _flush; the timeout only re-checks the exit condition (a
                # send task leaves _tasks after its outcome). Idle, with nothing in flight, once a second:
                # 50 wake-ups a second were most of an idle gateway's CPU.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush.wait(), 0.02 if self._stopping or self._tasks else 1.0)
            if self._outcomes:
                await self._write_outcomes()

    async def _write_outcomes(self) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            for attempt in range(1, 1000):
                try:
                    await self._record(batch)
                    _log_outcomes(batch)
                    break
                except Exception:
                    # The database is away: hold the outcomes (the leases keep the messages ours a while).
                    log.exception("recording %d outcomes failed (try %d)", len(batch), attempt)
                    if self._stopping and attempt >= 3:
                        return
                    await asyncio.sleep(min(5.0, 0.2 * attempt))
            self._on_outbox()
        finally:
            # A message counts against the claim limit until its outcome is committed: a crash then
            # resubmits at most what was in the window, not a backlog of unrecorded outcomes.
            self._in_flight -= len(batch)
            self._room.set()

    async def _record(self, batch: list[Outcome]) -> None:
        now = utcnow()
        settings = self._settings
        events: list[dict[str, Any]] = []
        out_rows: list[dict[str, Any]] = []
        accepted: list[tuple[str, list[str]]] = []  # (provider, ids) of the parts recorded here
        async with self._sessions() as s:
            sent_by_provider: dict[str, list[Outcome]] = defaultdict(list)
            for o in batch:
                if o.kind == "sent":
                    sent_by_provider[o.provider or ""].append(o)
            for provider, group in sent_by_provider.items():
                owned = set((await s.scalars(
                    update(Message)
                    .where(Message.sid.in_([o.msg.sid for o in group]), Message.lease_owner == self._owner,
                           Message.status == Status.SENDING.value)
                    .values(status=Status.SENT.value, provider=provider, lease_owner=None, lease_expires_at=None,
                            updated_at=now)
                    .returning(Message.sid)
                )).all())
                group = [o for o in group if o.msg.sid in owned]
                if not group:
                    continue
                # Parts accepted on an earlier attempt keep their rows (and any receipt they already got).
                await s.execute(delete(MessagePart).where(MessagePart.message_sid.in_([o.msg.sid for o in group]),
                                                          MessagePart.upstream_id.is_(None)))
                poll_at = now + timedelta(seconds=self._poll_interval(provider)) if provider in self._polled else None
                parts = [
                    {"message_sid": o.msg.sid, "part_no": i + 1, "provider": provider,
                     "upstream_id": normalise_upstream_id(uid), "status": Status.SENT.value, "submitted_at": now,
                     "provider_status_code": o.result.provider_status_code if o.result else None,
                     "next_poll_at": poll_at}
                    for o in group for i, uid in enumerate(o.result.upstream_ids if o.result else ())
                    if i + 1 not in _accepted_before(o)
                ]
                if parts:
                    await s.execute(insert(MessagePart), parts)
                for o in group:
                    events.append(_event(o.msg.sid, Status.SENT, f"provider:{provider}", now))
                    if o.msg.callback:
                        out_rows.append(outbox.callback_event(url=o.msg.callback, message_sid=o.msg.sid,
                                                              status=Status.SENT, to=o.msg.to, sender=o.msg.sender,
                                                              error_code=None, at=now))
                self._metrics.status.labels(Status.SENT.value, provider).inc(len(group))
                # Receipts that overtook these submit responses are applied after the commit.
                accepted.append((provider,
                                 [str(u) for o in group for u in (o.result.upstream_ids if o.result else ())]))

            for o in batch:
                if o.kind == "retry" and o.msg.attempts >= settings.retry_max_attempts:
                    o.kind, o.detail = "failed", f"gave up after {o.msg.attempts} attempts: {o.detail}"
                if o.kind == "retry":
                    delay = o.retry_after or backoff_seconds(o.msg.attempts, settings.retry_base_seconds,
                                                             settings.retry_max_seconds, random.random())
                    res = await s.execute(
                        update(Message)
                        .where(Message.sid == o.msg.sid, Message.lease_owner == self._owner)
                        .values(status=Status.QUEUED.value, due_at=now + timedelta(seconds=delay), lease_owner=None,
                                lease_expires_at=None, provider_status_code=o.code, updated_at=now))
                    if getattr(res, "rowcount", 1):
                        events.append(_event(o.msg.sid, Status.QUEUED, f"provider:{o.provider or '-'}", now,
                                              code=o.code, detail=f"retry in {delay:.1f}s: {o.detail}", applied=True))
                        await self._record_parts(s, o, now, accepted)
                elif o.kind == "failed":
                    res = await s.execute(
                        update(Message)
                        .where(Message.sid == o.msg.sid, Message.lease_owner == self._owner)
                        .values(status=Status.FAILED.value, due_at=None, lease_owner=None, lease_expires_at=None,
                                provider=o.provider, provider_status_code=o.code, error_code=o.code, updated_at=now))
                    if getattr(res, "rowcount", 1):
                        events.append(_event(o.msg.sid, Status.FAILED, f"provider:{o.provider or '-'}", now,
                                              code=o.code, detail=o.detail))
                        await self._record_parts(s, o, now, accepted)
                        out_rows.append(outbox.report_event(
                            queue=settings.delivery_report_queue, message_sid=o.msg.sid, status=Status.FAILED,
                            provider_status_code=o.code, channel=o.msg.channel, to=o.msg.to, provider=o.provider,
                            error_code=o.code, at=now))
                        if o.msg.callback:
                            out_rows.append(outbox.callback_event(
                                url=o.msg.callback, message_sid=o.msg.sid, status=Status.FAILED, to=o.msg.to,
                                sender=o.msg.sender, error_code=o.code, at=now))
                        self._metrics.status.labels(Status.FAILED.value, o.provider or "-").inc()
            if events:
                await s.execute(insert(StatusEvent), events)
            if out_rows:
                await outbox_insert(s, out_rows)
            await s.commit()
        await self._apply_pending(accepted)

    async def _apply_pending(self, accepted: list[tuple[str, list[str]]]) -> None:
        """Receipts that overtook the submit responses just recorded: applied now that the parts are
        committed. Checked after the commit, not in its transaction: a receipt kept while that
        transaction was open is invisible to it, and its own check could not see these parts either
        (see receipts.apply_kept). A failure here leaves them to the sweep."""
        accepted = [(provider, ids) for provider, ids in accepted if ids]
        if not accepted:
            return
        applied: CounterType[str] = CounterType()
        try:
            async with self._sessions() as s:
                for provider, ids in accepted:
                    await apply_pending(s, provider, ids, self._settings, applied)
                if s.in_transaction():
                    await s.commit()
        except Exception:
            log.exception("applying receipts kept for %d recorded submits failed: left to the sweep",
                          sum(len(ids) for _, ids in accepted))
            return
        self._count_statuses(applied)

    @staticmethod
    async def _record_parts(s: AsyncSession, o: Outcome, now: datetime,
                            accepted: list[tuple[str, list[str]]]) -> None:
        """The parts of a long message that stopped part-way: accepted ones with their ids, the others
        `queued` for the next attempt, or `failed` (the refused one) / `canceled` when the message failed.
        The ids accepted on this attempt go to `accepted` (their kept receipts are applied after commit)."""
        progress = o.progress or o.msg.progress
        if progress is None:
            return
        before = _accepted_before(o)
        await s.execute(delete(MessagePart).where(MessagePart.message_sid == o.msg.sid,
                                                  MessagePart.upstream_id.is_(None)))
        refused = min((n for n in range(1, progress.total + 1) if n not in progress.accepted), default=None)
        rows: list[dict[str, Any]] = []
        for n in range(1, progress.total + 1):
            if n in before:
                continue
            uid = progress.accepted.get(n)
            if uid is not None:
                status, code = Status.SENT, None
            elif o.kind == "failed":
                status, code = (Status.FAILED, o.code) if n == refused else (Status.CANCELED, None)
            else:
                status, code = Status.QUEUED, o.code if n == refused else None
            rows.append({"message_sid": o.msg.sid, "part_no": n, "provider": progress.provider,
                         "upstream_id": normalise_upstream_id(uid) if uid is not None else None,
                         "status": status.value, "provider_status_code": code,
                         "submitted_at": now if uid is not None else None, "concat_ref": progress.reference})
        if rows:
            await s.execute(insert(MessagePart), rows)
        if o.kind == "failed":
            await s.execute(update(MessagePart)
                            .where(MessagePart.message_sid == o.msg.sid, MessagePart.status == Status.QUEUED.value)
                            .values(status=Status.CANCELED.value))
        accepted.append((progress.provider, [str(uid) for n, uid in progress.accepted.items() if n not in before]))

    def _count_statuses(self, counts: CounterType[str]) -> None:
        self._metrics.count_reports(counts, receipts=False)  # these reports were counted when they arrived

    def _poll_interval(self, provider: str) -> float:
        return first_poll_delay(self._settings.provider(provider)) or 30.0

    # -- housekeeping -----------------------------------------------------------------------
    async def _housekeeping_loop(self) -> None:
        ticks = 0
        while True:
            # Every 0.5 s while sending (the pending-receipt sweep closes a race of receipts and submit
            # responses); every 2 s once nothing was sent for 2 minutes, so an idle gateway stays idle.
            busy = self._in_flight or asyncio.get_running_loop().time() - self._last_claimed < 120
            await asyncio.sleep(0.5 if busy else 2.0)
            ticks += 1
            try:
                async with self._sessions() as s:
                    swept: CounterType[str] = CounterType()
                    if await sweep_pending(s, self._settings, counts=swept):
                        await s.commit()
                        self._count_statuses(swept)
                        self._on_outbox()
                    if ticks % 120 == 0:
                        await purge_expired_pending(s)
                        await s.commit()
                        await self.purge_idempotency_keys()
                if ticks % 4 == 0:
                    await self.release_expired_leases()
                if ticks % 20 == 0:
                    await self.expire_unreceipted()
            except Exception:
                log.exception("housekeeping failed")

    async def purge_idempotency_keys(self) -> int:
        """Forget Idempotency-Keys older than `idempotency_ttl_seconds`."""
        cutoff = utcnow() - timedelta(seconds=self._settings.idempotency_ttl_seconds)
        async with self._sessions() as s:
            res = await s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
            await s.commit()
        return int(getattr(res, "rowcount", 0) or 0)

    async def expire_unreceipted(self, limit: int = 1000) -> int:
        """Messages `sent` longer than `receipt_timeout_seconds` with no final receipt (the upstream lost
        them, or never sends receipts) become undelivered with code NO_RECEIPT, and get their report."""
        cutoff = utcnow() - timedelta(seconds=self._settings.receipt_timeout_seconds)
        async with self._sessions() as s:
            sids = list((await s.scalars(
                select(Message.sid)
                .where(Message.status == Status.SENT.value, Message.created_at < cutoff, Message.updated_at < cutoff)
                .order_by(Message.created_at).limit(limit)
                .with_for_update(skip_locked=True))).all())
            if not sids:
                return 0
            counts: CounterType[str] = CounterType()
            await apply_receipts(s, [Receipt(provider=None, upstream_id=sid, status=Status.UNDELIVERED,
                                             provider_status_code="NO_RECEIPT", source="receipt-timeout",
                                             error_code="NO_RECEIPT") for sid in sids], self._settings, counts)
            await s.commit()
        self._count_statuses(counts)
        log.warning("%d messages had no receipt after %.0fs: undelivered (NO_RECEIPT)", len(sids),
                    self._settings.receipt_timeout_seconds)
        self._on_outbox()
        return len(sids)

    async def release_expired_leases(self) -> int:
        """Messages whose claimer died: due again now (this is the resubmit window)."""
        now = utcnow()
        async with self._sessions() as s:
            res = await s.execute(
                update(Message)
                .where(Message.status == Status.SENDING.value, Message.lease_expires_at < now)
                .values(due_at=now, lease_owner=None, lease_expires_at=None, updated_at=now))
            await s.commit()
        n = int(getattr(res, "rowcount", 0) or 0)
        if n:
            log.warning("%d messages had an expired lease and are due again", n)
            self._wake.set()
        return n


def _accepted_before(o: Outcome) -> set[int]:
    """Part numbers that already have their row from an earlier attempt."""
    return set(o.msg.progress.accepted) if o.msg.progress is not None else set()


def _parts_detail(exc: ProviderError) -> str:
    p = exc.progress
    if p is None:
        return exc.message
    nxt = min((n for n in range(1, p.total + 1) if n not in p.accepted), default=p.total)
    return f"{exc.message} ({len(p.accepted)} of {p.total} parts accepted; part {nxt} and on to follow, same reference)"


def _log_outcomes(batch: list[Outcome]) -> None:
    """A line per recorded submit outcome: INFO when sent, WARNING when it will be retried or failed."""
    info = log.isEnabledFor(logging.INFO)
    for o in batch:
        if o.kind == "sent":
            if info:
                log.info("submitted", extra={"message_sid": o.msg.sid, "provider": o.provider,
                                             "upstream_ids": list(o.result.upstream_ids) if o.result else [],
                                             "attempt": o.msg.attempts})
        else:
            log.warning("submit failed" if o.kind == "failed" else "submit to retry",
                        extra={"message_sid": o.msg.sid, "provider": o.provider, "code": o.code,
                               "detail": o.detail, "attempt": o.msg.attempts})


def _event(sid: str, status: Status, source: str, at: datetime, *, code: str | None = None,
           detail: str | None = None, applied: bool = True) -> dict[str, Any]:
    return {"message_sid": sid, "status": status.value, "source": source, "applied": applied,
            "provider_status_code": code, "detail": detail, "created_at": at}

