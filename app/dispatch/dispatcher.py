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
from collections import deque
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.dispatch.housekeeping import Housekeeping
from app.dispatch.poller import first_poll_delay
from app.dispatch.start_rate import StartRate, handoff_budget
from app.domain.dispatching import Claimed, Outcome, OutcomeKind
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.routing import Route, providers_for
from app.logs import message_sid_var
from app.metrics import Metrics
from app.providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RetryableError,
    RouteError,
    UnknownOutcomeError,
)
from app.services import dispatching

log = logging.getLogger("smsgw.dispatch")

__all__ = ["Claimed", "Dispatcher", "Outcome"]

# A claimed row's stored values to their enums by a dict lookup (Enum's __call__ is a Python call).
_ENCODINGS = {e.value: e for e in Encoding}
_MODES = {m.value: m for m in LongMessageMode}


class Dispatcher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 providers: dict[str, Provider], metrics: Metrics, owner: str,
                 on_outbox: Callable[[], None] | None = None) -> None:
        self._sessions = sessions
        self._settings = settings
        self._providers = providers
        self._metrics = metrics
        self._owner = owner
        self._on_outbox = on_outbox or (lambda: None)
        self._routes = [Route(r.channel, r.prefix, tuple(r.providers)) for r in settings.routes]
        self._sems = {n: asyncio.Semaphore(max(1, p.max_in_flight)) for n, p in providers.items()}
        self._latency = {n: metrics.submit_latency.labels(n) for n in providers}  # looked up once, not per submit
        self._capacity = max(1, sum(p.max_in_flight for p in providers.values()))
        self._poll_after = {p.name: delay for p in settings.providers
                            if (delay := first_poll_delay(p)) is not None}
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._flush = asyncio.Event()
        self._in_flight = 0
        # Messages handed over by the accept path, not started yet, each with the loop time after which
        # its lease is too close to expiry to start it (then it is left to expire and be claimed again).
        self._handed: deque[tuple[Claimed, float]] = deque()
        self._handoff_max = settings.dispatch_handoff_max
        self._start_rate = StartRate()
        self._last_claimed = float("-inf")  # loop time of the last claim that found messages
        self._outcomes: list[Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._runners: list[asyncio.Task[None]] = []
        self._stopping = False
        self._housekeeping = Housekeeping(sessions, settings, metrics, self._on_outbox, self.wake, self.busy)
        self.owner = owner
        self.lease_seconds = settings.dispatch_lease_seconds

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._runners = [asyncio.create_task(self._claim_loop(), name="dispatch-claim"),
                         asyncio.create_task(self._write_loop(), name="dispatch-write"),
                         asyncio.create_task(self._housekeeping.run(), name="dispatch-housekeeping"),
                         asyncio.create_task(self._renew_loop(), name="dispatch-renew")]

    async def stop(self) -> None:
        """Stop claiming, let submits in flight finish (up to 10 s), record their outcomes; messages handed
        over and not started yet are given back (due again now, for any dispatcher)."""
        self._stopping = True
        self._wake.set()
        self._room.set()
        if self._handed:
            unsent = [c.sid for c, _ in self._handed]
            self._handed.clear()
            try:
                await dispatching.release(self._sessions, self._owner, unsent)
            except Exception:  # their leases expire instead
                log.exception("giving back %d messages not started failed: due when their lease expires",
                              len(unsent))
        claim, write = self._runners[:2]
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

    # -- taking messages straight from the accept path (domain.dispatching.HandOff) ---------------------
    def room(self) -> int:
        if self._stopping or not self._runners:
            return 0
        budget = handoff_budget(self._start_rate.per_second, self._capacity, self.lease_seconds, self._handoff_max)
        return max(0, budget - len(self._handed) - self._in_flight)

    def take(self, claimed: list[Claimed]) -> None:
        loop = asyncio.get_running_loop()
        # Started no later than 3/4 of the lease: a submit begun then still answers well before expiry.
        deadline = loop.time() + 0.75 * self.lease_seconds
        self._handed.extend((c, deadline) for c in claimed)
        self._last_claimed = loop.time()
        self._feed()

    def _feed(self) -> None:
        """Start handed-over messages while the window has room (the same bound as a claim's)."""
        if not self._handed:
            return
        now = asyncio.get_running_loop().time()
        start: list[Claimed] = []
        late: list[str] = []
        while self._handed and self._in_flight + len(start) < 2 * self._capacity:
            claimed, deadline = self._handed.popleft()
            if now > deadline:
                late.append(claimed.sid)  # its lease expires soon: given back, never sent twice
            else:
                start.append(claimed)
        self._start_rate.started(len(start), now, backlogged=bool(self._handed))
        if late:
            log.warning("%d handed-over messages waited too long to start: given back, due again", len(late))
            task = asyncio.create_task(self._give_back(late))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._start_sending(start)

    async def _give_back(self, sids: list[str]) -> None:
        try:
            await dispatching.release(self._sessions, self._owner, sids)
            self._wake.set()
        except Exception:  # their leases expire instead
            log.exception("giving back %d late messages failed: due when their lease expires", len(sids))

    async def _renew_loop(self) -> None:
        """Handed-over messages still waiting at 5/8 of their lease (their start deadline, 3/4, less than 1/8
        away) are leased again, all in one UPDATE: more than the dispatcher starts in a lease (the start
        rate misjudged, the upstream slowed) costs one row version a message, where a give-back and a
        claim cost two."""
        period = self.lease_seconds / 16
        while not self._stopping:
            await asyncio.sleep(period)
            now = asyncio.get_running_loop().time()
            horizon = now + self.lease_seconds / 8
            due = {c.sid for c, deadline in self._handed if deadline <= horizon}
            if not due or self._stopping:
                continue
            try:
                renewed = await dispatching.renew(self._sessions, self._settings, self._owner, list(due))
            except Exception:  # database away: those that pass their deadline are given back, or expire
                log.exception("renewing the leases of %d handed-over messages failed", len(due))
                continue
            lost = len(due) - len(renewed)
            if lost:  # no longer ours (expired and claimed elsewhere): never started here
                log.warning("%d handed-over messages were no longer leased to this dispatcher: dropped", lost)
            deadline = now + 0.75 * self.lease_seconds  # `now` came before the UPDATE's clock: conservative
            self._handed = deque((c, deadline if c.sid in renewed else d) for c, d in self._handed
                                 if c.sid not in due or c.sid in renewed)

    def _start_sending(self, claimed: list[Claimed]) -> None:
        for msg in claimed:
            self._in_flight += 1
            task = asyncio.create_task(self._send(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def busy(self) -> bool:
        """Sending, or sent something in the last two minutes (the housekeeping runs faster then)."""
        return bool(self._in_flight) or asyncio.get_running_loop().time() - self._last_claimed < 120

    # Housekeeping entry points, kept on the dispatcher for the CLI and tests.
    async def purge_idempotency_keys(self) -> int:
        return await self._housekeeping.purge_idempotency_keys()

    async def expire_unreceipted(self, limit: int = 1000) -> int:
        return await self._housekeeping.expire_unreceipted(limit)

    async def release_expired_leases(self) -> int:
        return await self._housekeeping.release_expired_leases()

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
            self._start_sending(claimed)
            if claimed:
                self._start_rate.started(len(claimed), asyncio.get_running_loop().time(),
                                         backlogged=len(claimed) == limit)
                idle = 0.05
                self._last_claimed = asyncio.get_running_loop().time()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)
            idle = min(idle * 2, 1.0)

    async def claim(self, limit: int) -> list[Claimed]:
        return await dispatching.claim(self._sessions, self._settings, self._owner, limit)

    # -- sending ----------------------------------------------------------------------------
    async def _send(self, msg: Claimed) -> None:
        # Its own task: whatever a provider logs while submitting carries the message's sid.
        message_sid_var.set(msg.sid)
        try:
            outcome = await self._try_route(msg)
        except Exception as exc:  # a bug in a provider must not lose the message
            log.exception("submit crashed", extra={"message_sid": msg.sid})
            outcome = Outcome(msg, OutcomeKind.RETRY, None, code="INTERNAL", detail=type(exc).__name__)
        self._outcomes.append(outcome)
        # At once: an answered submit not yet recorded is what a crash would send twice. Outcomes that
        # arrive while a write is in progress go together in the next one (group commit).
        self._flush.set()

    async def _try_route(self, msg: Claimed) -> Outcome:
        names = providers_for(self._routes, msg.channel, msg.to)
        if not names:
            return Outcome(msg, OutcomeKind.FAILED, None, code="NO_ROUTE",
                           detail=f"no route for channel {msg.channel!r}")
        if msg.progress is not None:
            # Its first parts are with that provider: the rest must follow them there, never fail over.
            names = (msg.progress.provider,)
        out = OutboundMessage(
            sid=msg.sid, to=msg.to, sender=msg.sender, body=msg.body, encoding=_ENCODINGS[msg.encoding],
            long_message_mode=_MODES[msg.mode], flash=msg.flash, validity_period=msg.validity,
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
                        return Outcome(msg, OutcomeKind.FAILED, name, code=exc.code, detail=_parts_detail(exc),
                                       progress=exc.progress)
                    last = exc
                    continue
                except RetryableError as exc:
                    # Down or busy: the next provider of the route may take it now; if none does, retry later.
                    self._metrics.submit_errors.labels(name, "retry").inc()
                    if exc.progress is not None:
                        return Outcome(msg, OutcomeKind.RETRY, name, code=exc.code, detail=_parts_detail(exc),
                                       retry_after=exc.retry_after, progress=exc.progress)
                    retry = retry or Outcome(msg, OutcomeKind.RETRY, name, code=exc.code, detail=exc.message,
                                             retry_after=exc.retry_after)
                    continue
                except PermanentError as exc:
                    self._metrics.submit_errors.labels(name, "permanent").inc()
                    return Outcome(msg, OutcomeKind.FAILED, name, code=exc.code, detail=_parts_detail(exc),
                                   progress=exc.progress)
                except UnknownOutcomeError as exc:
                    self._metrics.submit_errors.labels(name, "unknown").inc()
                    if provider.type == "smpp":
                        self._metrics.resubmits.labels(name).inc()
                        return Outcome(msg, OutcomeKind.RETRY, name, code=exc.code,
                                       detail=f"no answer to submit_sm, resubmitting: {_parts_detail(exc)}",
                                       progress=exc.progress)
                    return Outcome(msg, OutcomeKind.FAILED, name, code="UNKNOWN_OUTCOME",
                                   detail=f"request sent but no answer ({exc.code}); not resubmitted to avoid "
                                          f"a duplicate")
                self._latency[name].observe(loop.time() - started)
                return Outcome(msg, OutcomeKind.SENT, name, result=result)
        if retry is not None:
            return retry
        if unavailable:
            return Outcome(msg, OutcomeKind.RETRY, unavailable[0], code="PROVIDER_UNAVAILABLE",
                           detail="no provider of the route is connected: " + ", ".join(unavailable))
        assert last is not None
        return Outcome(msg, OutcomeKind.FAILED, names[-1], code=last.code,
                       detail=f"every provider refused: {last.message}")

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
        released = False

        def release() -> None:
            # A message counts against the claim limit until its outcome is committed: a crash then
            # resubmits at most what was in the window, not a backlog of unrecorded outcomes.
            nonlocal released
            if not released:
                released = True
                self._in_flight -= len(batch)
                self._feed()  # handed-over messages first: they are ours already
                self._room.set()

        def committed() -> None:
            self._on_outbox()
            release()

        try:
            for attempt in range(1, 1000):
                try:
                    await self._record(batch, committed)
                    _log_outcomes(batch)
                    break
                except Exception:
                    if released:  # committed: what failed came after (giving the connection back)
                        log.exception("after recording %d outcomes", len(batch))
                        _log_outcomes(batch)
                        break
                    # The database is away: hold the outcomes (the leases keep the messages ours a while).
                    log.exception("recording %d outcomes failed (try %d)", len(batch), attempt)
                    if self._stopping and attempt >= 3:
                        return
                    await asyncio.sleep(min(5.0, 0.2 * attempt))
        finally:
            release()

    async def _record(self, batch: list[Outcome], committed: Callable[[], None] = lambda: None) -> None:
        done = await dispatching.record(self._sessions, self._settings, self._owner, batch, self._poll_after,
                                        committed)
        for (status, provider), n in done.statuses.items():
            self._metrics.status.labels(status, provider).inc(n)
        if done.kept_applied:
            self._metrics.count_reports(done.kept_applied, receipts=False)  # counted when they arrived


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
        if o.kind is OutcomeKind.SENT:
            if info:
                log.info("submitted", extra={"message_sid": o.msg.sid, "provider": o.provider,
                                             "upstream_ids": list(o.result.upstream_ids) if o.result else [],
                                             "attempt": o.msg.attempts})
        else:
            log.warning("submit failed" if o.kind is OutcomeKind.FAILED else "submit to retry",
                        extra={"message_sid": o.msg.sid, "provider": o.provider, "code": o.code,
                               "detail": o.detail, "attempt": o.msg.attempts})
