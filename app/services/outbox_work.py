"""The outbox publishers' unit of work: the transactions around publishing (statements in
app/db/outbox_store.py; the publishers in app/events/ talk to the broker and to HTTP, and never commit).

Broker batches (`broker_batch`), exactly once from a consumer's point of view (contract §4):
1. transaction A deletes up to N due rows (`take_due`) and stays open while they are published, so
   they are locked: other publishers skip them;
2. the attempt record naming the rows to send is written and committed in a transaction of its own
   (B, `record_attempt`), before any SEND;
3. the batch goes out as one STOMP transaction; on the COMMIT's receipt A commits: the rows are gone,
   and the record names only rows that are gone, so it is finished: the publisher's next batch
   rewrites it (one UPDATE) instead of writing a new one. (On SQLite, whose ids come back once
   deleted, A deletes the record with its rows instead.) Any failure rolls A back: the rows are back,
   untouched, and the record stays, in doubt; the publisher writes a new one for its next batch.
An attempt record that outlives its transaction (the process died between the broker's COMMIT and A's,
the receipt never came, A's commit failed) marks its rows in doubt. A claim that gets such rows (they
cannot be another publisher's in flight: those are locked) hands them to the publisher, which asks the
broker whether that batch was committed (its ledger, events/stomp_publisher.py); the ones it was are
not sent again, and A takes the resolved ids out of the old record. So a row costs 2 row versions
(INSERT, DELETE), and a batch 1 more (its record rewritten), plus writes only when something failed.
Finished records of publishers that stopped or died are deleted by any publisher, once a minute
(`drop_finished_attempts`), each only if unchanged since it was read.

HTTP batches (`http_batch`): the rows are locked by a SELECT in A while the POSTs go out; then A deletes
the delivered ones and records each failure (attempts, error, backoff, or given up), and commits.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import outbox_store as store
from app.db.outbox_store import AttemptRecord, OutboxRow
from app.db.tables import utcnow

log = logging.getLogger("smsgw.outbox")

CALLBACK_MAX_BACKOFF_SECONDS = 600.0


@dataclass(slots=True)
class BrokerBatch:
    """Rows claimed for the broker, inside the open transaction A (see the module docstring)."""

    work: OutboxWork
    rows: list[OutboxRow]
    in_doubt: list[OutboxRow]  # sent before with an unknown outcome: look for them on the queue first
    stale: list[AttemptRecord]  # the attempt records that put them in doubt
    found: set[int] = field(default_factory=set)
    attempt_id: int | None = None
    ledger_key: str = field(default_factory=lambda: secrets.token_hex(16))  # this batch's ledger entry

    def found_on_broker(self, ids: Collection[int]) -> None:
        """These in-doubt rows are on the queue already: they leave with the batch, not sent again."""
        self.found.update(ids)

    @property
    def to_send(self) -> list[OutboxRow]:
        return [r for r in self.rows if r.id not in self.found]

    async def record_attempt(self) -> None:
        """Commit the attempt record for `to_send` (transaction B). Call it just before the SENDs."""
        ids = [r.id for r in self.to_send]
        if not ids or self.attempt_id is not None:
            return
        work = self.work
        finished, work.finished = work.finished, None  # from here it names rows not published yet
        async with work.sessions() as s:
            now = utcnow()
            if finished is not None and await store.reuse_attempt(s, finished.id, ids, now, self.ledger_key):
                attempt_id = finished.id
            else:
                attempt_id = await store.add_attempt(s, work.owner, ids, now, self.ledger_key)
            await s.commit()
        self.attempt_id = attempt_id


@dataclass(slots=True)
class HttpBatch:
    """Rows locked for HTTP delivery, inside the open transaction A; `settle` says how each one ended."""

    rows: list[OutboxRow]
    results: list[tuple[str | None, bool]] = field(default_factory=list)

    def settle(self, results: Sequence[tuple[str | None, bool]]) -> None:
        """One (error or None, give up at once) per row, in `rows` order."""
        if len(results) != len(self.rows):
            raise ValueError("one result per row")
        self.results = list(results)


# Claims continue after the last row taken (a cursor), so they never walk the index entries of rows
# already deleted and not vacuumed yet (at 100,000 reports that walk was half of PostgreSQL's time);
# every FULL_PASS_SECONDS, or when a claim comes back short, one starts from the beginning again, for
# a row that committed late with an earlier available_at than the cursor.
FULL_PASS_SECONDS = 1.0
# How often a publisher deletes the finished attempt records of others (stopped or dead).
ATTEMPT_SWEEP_SECONDS = 60.0


class OutboxWork:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], owner: str) -> None:
        self.sessions = sessions
        self.owner = owner
        self._cursor: tuple[datetime, int] | None = None
        self._full_pass_at = 0.0
        self._sweep_attempts_at = 0.0
        # This publisher's attempt record whose batch committed: rewritten for the next batch.
        self.finished: AttemptRecord | None = None

    @asynccontextmanager
    async def broker_batch(self, kinds: Collection[str], limit: int) -> AsyncIterator[BrokerBatch]:
        """Claim a batch; leaving the block without an exception commits it as published (or found),
        an exception rolls it back (the rows come back; its attempt record, if written, stays)."""
        clock = time.monotonic()
        if clock >= self._sweep_attempts_at:
            self._sweep_attempts_at = clock + ATTEMPT_SWEEP_SECONDS
            await self.drop_finished_attempts()
        after = self._cursor if clock < self._full_pass_at else None
        if after is None:
            self._full_pass_at = clock + FULL_PASS_SECONDS
        async with self.sessions() as s:
            rows = await store.take_due(s, kinds, limit, utcnow(), after)
            passed = [(r.available_at, r.id) for r in rows if r.available_at is not None]
            self._cursor = max(passed) if len(rows) == limit and passed else None
            stale: list[AttemptRecord] = []
            in_doubt: list[OutboxRow] = []
            if rows:
                ids = {r.id for r in rows}
                stale = [rec for rec in await store.attempt_records(s) if ids.intersection(rec.event_ids)]
                named = {i for rec in stale for i in rec.event_ids}
                # attempts > 0: claimed by a process of the version before attempt records (its lease
                # counted an attempt), so possibly sent.
                in_doubt = [r for r in rows if r.id in named or r.attempts > 0]
            batch = BrokerBatch(self, rows, in_doubt, stale)
            try:
                yield batch
            except BaseException:
                self._cursor = None  # the rows are back (rolled back): the next claim starts from the top
                raise
            if rows:
                finished = await self._finish_broker(s, batch)
                await s.commit()
                if finished is not None:
                    self.finished = finished

    async def _finish_broker(self, s: AsyncSession, batch: BrokerBatch) -> AttemptRecord | None:
        """The batch's statements in A; returns its attempt record when it stays, finished, for the next
        batch to rewrite once A has committed."""
        ids = {r.id for r in batch.rows}
        if not store.locks_rows(s):
            await store.delete_events(s, ids)  # SQLite read them only
        finished = None
        drop: list[int] = []
        if batch.attempt_id is not None:
            # A finished record names ids that are gone for good, except where ids come back (SQLite):
            # there it leaves with its rows, or it would put the next rows given those ids in doubt.
            if store.ids_never_reused(s):
                finished = AttemptRecord(batch.attempt_id, self.owner, (), batch.ledger_key)
            else:
                drop.append(batch.attempt_id)
        for rec in batch.stale:
            # Every claimed id is settled now: found on the queue, or sent again under our own record.
            left = [i for i in rec.event_ids if i not in ids]
            if left:
                await store.rewrite_attempt(s, rec.id, left)
            else:
                drop.append(rec.id)
        await store.drop_attempts(s, drop)
        return finished

    async def drop_finished_attempts(self) -> int:
        """Delete the attempt records none of whose rows exist any more (their batches committed; left by a
        publisher that stopped or died), this publisher's own excepted; returns how many."""
        async with self.sessions() as s:
            mine = None if self.finished is None else self.finished.id
            records = [rec for rec in await store.attempt_records(s) if rec.id != mine]
            left = await store.existing_events(s, {i for rec in records for i in rec.event_ids})
            finished = [rec for rec in records if left.isdisjoint(rec.event_ids)]
            await store.drop_unchanged_attempts(s, finished)
            await s.commit()
        return len(finished)

    async def drop_own_attempt(self) -> None:
        """On stop: this publisher's finished attempt record goes (unless rewritten meanwhile)."""
        finished, self.finished = self.finished, None
        if finished is not None:
            async with self.sessions() as s:
                await store.drop_unchanged_attempts(s, [finished])
                await s.commit()

    @asynccontextmanager
    async def http_batch(self, kinds: Collection[str], limit: int, max_attempts: int) -> AsyncIterator[HttpBatch]:
        """Lock a batch for HTTP; leaving the block writes what `settle` said and commits."""
        async with self.sessions() as s:
            batch = HttpBatch(await store.lock_due(s, kinds, limit, utcnow()))
            yield batch
            if batch.rows and batch.results:
                await self._finish_http(s, batch, max_attempts)
                await s.commit()

    async def _finish_http(self, s: AsyncSession, batch: HttpBatch, max_attempts: int) -> None:
        now = utcnow()
        done = [r.id for r, (e, _) in zip(batch.rows, batch.results, strict=True) if e is None]
        failed: list[dict[str, Any]] = []
        for r, (e, final) in zip(batch.rows, batch.results, strict=True):
            if e is None:
                continue
            attempts = r.attempts + 1
            values: dict[str, Any] = {"id": r.id, "attempts": attempts, "last_error": e, "available_at": now,
                                      "published_at": None}
            if final:
                values.update(published_at=now, last_error=f"gave up: {e}")
            elif attempts >= max_attempts:
                values.update(published_at=now, last_error=f"gave up after {attempts} attempts: {e}")
                log.warning("gave up on a %s after %d attempts", r.kind, attempts,
                            extra={"message_sid": r.message_sid})
            else:
                delay = min(CALLBACK_MAX_BACKOFF_SECONDS, 2.0 ** attempts) * (0.5 + random.random() / 2)
                values["available_at"] = now + timedelta(seconds=delay)
            failed.append(values)
        await store.delete_events(s, done)
        if failed:
            await store.record_failures(s, failed)

    async def backlog(self, kinds: Collection[str]) -> int:
        """Rows of these kinds still to publish."""
        async with self.sessions() as s:
            return await store.pending_count(s, kinds)

    async def lag_seconds(self, kinds: Collection[str]) -> float | None:
        """Age of the oldest row of these kinds still to publish (None when there is none)."""
        async with self.sessions() as s:
            oldest = await store.oldest_pending(s, kinds)
        if oldest is None:
            return None
        return max(0.0, (utcnow() - oldest).total_seconds())
