"""Publishing the outbox: delivery reports and inbound SMS to the broker over STOMP, status callbacks
and forwards over HTTP (`app/events/callbacks.py`). The transactions around them are the unit of work's
(app/services/outbox_work.py); nothing here commits.

A batch is claimed by deleting it in a transaction that stays open while it is published (its rows are
locked: other replicas skip them), and goes to the broker as one STOMP transaction (BEGIN, the SENDs,
COMMIT with a receipt): the broker makes all of it visible or none of it, and syncs its store once per
batch rather than once per message. On the COMMIT's receipt the claim commits and the rows are gone; on
a failure it rolls back and they are back. Before the SENDs an attempt record naming the batch is
committed; one that outlives its claim (the connection dropped before the receipt, or the process or
its database connection died after the broker's COMMIT) marks those rows in doubt.

Whether the broker committed an in-doubt batch is written on the broker itself: every batch's STOMP
transaction also carries one small message to a ledger queue (`smsgw.outbox-ledger`, never consumed,
expiring after LEDGER_SECONDS), whose `smsgw_attempt` property is the attempt record's random
`ledger_key`. Whoever claims in-doubt rows next browses the ledger for their records: a record found
there was committed (its rows leave without being sent again, even if a consumer has long taken them off
the report queue); a record not found never was (its rows are sent). Looking for the reports themselves
would miss those a consumer already took: a kill -9 of the gateway between the broker's COMMIT and ours
then duplicated a whole batch (measured: 40–130 of 1,500 reports in `bench.faults gateway --short`, and
as many with the earlier lease design, only 30 s later). Rows in doubt without a record (claimed by a
version before attempt records) are still looked up on the report queue by their `smsgw_dedupe_key`
property. A report keeps its `smsgw-report-id` header, so a consumer can drop a duplicate should one
still occur (a ledger message expired, or the broker lost its store).

SEND frames carry no `content-length` header, so ActiveMQ hands JMS consumers a TextMessage
(JSON bodies never contain the NUL byte that would otherwise end the frame early).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.outbox_store import OutboxRow
from app.events.stomp_client import StompConnection, StompError
from app.services.outbox_rows import BROKER_KINDS
from app.services.outbox_work import BrokerBatch, OutboxWork

log = logging.getLogger("smsgw.outbox")

# Broker reconnects: 1 s, 3 s, 9 s, then every 15 s (±20 % jitter, so replicas do not knock in step).
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 15.0
IDLE_MAX_SECONDS = 2.0
# After a batch smaller than SMSGW_OUTBOX_BATCH, what comes next gathers this long before it is claimed.
# Each batch costs the same whatever its size (its attempt record's UPDATE, one row version; a STOMP
# transaction; a commit): published as soon as they came, reports went in batches of ~100 under a
# 2,000-a-second load, and the attempt records alone were 0.01 row versions a message (bench.run
# e2e-smpp-single). A report waits at most this much longer, against the half second or more an SMSC
# takes to send its receipt.
LINGER_SECONDS = 0.05
# A JMS-selectable copy of the row's dedupe key (a property name must be a Java identifier, so not the
# `smsgw-report-id` header, which stays for consumers).
DEDUPE_PROPERTY = "smsgw_dedupe_key"
# The ledger of committed batches (see the module docstring).
LEDGER_QUEUE = "/queue/smsgw.outbox-ledger"
ATTEMPT_PROPERTY = "smsgw_attempt"
# An in-doubt batch is resolved as soon as its rows are claimed again (at once by a live replica, or by
# the restarted process): an hour covers a database outage after a crash. ActiveMQ browses only its
# browse page (400 messages by default): the ledger queue needs a policy with a page that holds an
# hour of entries (one per batch; scripts/activemq/activemq.xml, README "Several replicas").
LEDGER_SECONDS = 3600
# How old an attempt record must be before the ledger is asked about it (see _resolve_in_doubt).
SETTLE_SECONDS = 5.0


def ledger_entry(ledger_key: str) -> tuple[str, dict[str, str], str]:
    """The ledger message a batch's STOMP transaction carries: committed with the batch, or not at all."""
    expires = int((time.time() + LEDGER_SECONDS) * 1000)  # JMSExpiration, ms since the epoch
    return LEDGER_QUEUE, {"persistent": "true", "expires": str(expires), ATTEMPT_PROPERTY: ledger_key}, ""


class _Claimer:
    """What both publishers share: their unit of work, and waking up when rows are written."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, owner: str,
                 kinds: Sequence[str]) -> None:
        self.work = OutboxWork(sessions, owner)
        self.settings = settings
        self.owner = owner
        self.kinds = tuple(kinds)
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle_wait = 0.0

    def notify(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _idle(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _nothing_to_do(self, first: float) -> None:
        """Wait after an empty claim: `first` seconds, doubling while the outbox stays empty, up to
        IDLE_MAX_SECONDS. An idle gateway then asks the database every 2 s instead of 5 times a second;
        a commit in this process (notify) wakes the loop at once, so only rows written by another replica
        wait for the longer interval."""
        self._idle_wait = min(max(self._idle_wait * 2, first), IDLE_MAX_SECONDS)
        await self._idle(self._idle_wait)
        if self._wake.is_set():
            self._idle_wait = 0.0

    async def lag_seconds(self) -> float | None:
        """Age of the oldest unpublished row of these kinds (None when there is none)."""
        return await self.work.lag_seconds(self.kinds)


class OutboxPublisher(_Claimer):
    """Reports and inbound SMS to the broker; broker URLs are tried in order, with backoff.

    While the broker is away the publisher tries once per backoff period (1 s, 3 s, 9 s, then every
    15 s, with jitter): new reports wake an idle publisher at once, but never cut a backoff short, or
    every receipt would be a fresh connect attempt. It logs one line when the broker goes and one when it
    is back, with the number of rows that waited in the outbox meanwhile.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, owner: str) -> None:
        super().__init__(sessions, settings, owner, BROKER_KINDS)
        self.urls = settings.broker_urls()
        self.conn: StompConnection | None = None
        self.published = 0
        self.recovered = 0  # in-doubt rows found on the broker and marked without sending again
        self.connect_attempts = 0  # rounds over `urls` (the "back" log line says how many an outage took)
        self._down_since: float | None = None
        self._attempts_when_lost = 0
        self._stopped = asyncio.Event()

    async def stop(self) -> None:
        self._stopped.set()
        await super().stop()

    async def _pause(self, seconds: float) -> None:
        """Wait out a backoff: only stopping ends it early, `notify()` does not."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    @staticmethod
    def _headers(row: OutboxRow) -> dict[str, str]:
        headers = {k: str(v) for k, v in row.headers.items()}
        headers[DEDUPE_PROPERTY] = row.dedupe_key
        return headers

    @staticmethod
    async def _already_on_broker(conn: StompConnection, rows: Sequence[OutboxRow]) -> set[int]:
        """Of rows that were sent before with an unknown outcome, the ids of those the queue holds."""
        found: set[int] = set()
        by_destination: dict[str, dict[str, int]] = {}
        for r in rows:
            by_destination.setdefault(r.destination, {})[r.dedupe_key] = r.id
        for destination, keys in by_destination.items():
            names = sorted(keys)
            for i in range(0, len(names), 200):
                chunk = names[i:i + 200]
                quoted = ",".join("'" + k.replace("'", "''") + "'" for k in chunk)
                for headers in await conn.browse(destination, f"{DEDUPE_PROPERTY} IN ({quoted})"):
                    row_id = keys.get(headers.get(DEDUPE_PROPERTY, ""))
                    if row_id is not None:
                        found.add(row_id)
        if found:  # (none found is the common case after an outage: a line per batch would be noise)
            log.info("%d of %d in-doubt outbox rows were already on the broker", len(found), len(rows))
        return found

    @staticmethod
    async def _committed_attempts(conn: StompConnection, keys: Sequence[str]) -> set[str]:
        """Of these attempt records' ledger keys, those whose batch the broker committed (its ledger entry)."""
        found: set[str] = set()
        names = sorted({k for k in keys if k.isalnum()})  # hex: nothing to quote
        for i in range(0, len(names), 200):
            quoted = ",".join(f"'{n}'" for n in names[i:i + 200])
            for headers in await conn.browse(LEDGER_QUEUE, f"{ATTEMPT_PROPERTY} IN ({quoted})"):
                found.add(headers.get(ATTEMPT_PROPERTY, ""))
        return found

    async def _resolve_in_doubt(self, conn: StompConnection, batch: BrokerBatch) -> set[int]:
        """The ids of the in-doubt rows that are on the broker already (not to be sent again)."""
        if not batch.in_doubt:
            return set()
        # A record written moments ago may be a replica's that died with its COMMIT still in the broker's
        # socket buffer: the broker commits that batch a moment later. Asked too early, the ledger would
        # say "never committed" and the batch would go twice (bench.faults replicas: 80-152 duplicates).
        newest = max((rec.created_at for rec in batch.stale if rec.created_at is not None), default=None)
        if newest is not None:
            wait = SETTLE_SECONDS - (datetime.now(UTC) - newest).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
        committed = await self._committed_attempts(conn, [rec.ledger_key for rec in batch.stale])
        delivered = {i for rec in batch.stale if rec.ledger_key in committed for i in rec.event_ids}
        found = {r.id for r in batch.in_doubt if r.id in delivered}
        # The rest is looked up on the report queue too: rows claimed before attempt records existed,
        # and rows whose ledger entry was not seen (never committed, or beyond the broker's browse page
        # where the ledger queue has no policy for it: then this is the older, weaker check).
        rest = [r for r in batch.in_doubt if r.id not in found]
        if rest:
            found |= await self._already_on_broker(conn, rest)
        if found:
            log.info("%d of %d in-doubt outbox rows were committed on the broker already: not sent again",
                     len(found), len(batch.in_doubt))
        return found

    async def _connect(self) -> StompConnection:
        self.connect_attempts += 1
        password = self.settings.broker_password.get_secret_value() if self.settings.broker_password else None
        last: Exception | None = None
        for url in self.urls:
            try:
                return await StompConnection.open(url, self.settings.broker_user, password)
            except (OSError, StompError, TimeoutError) as exc:
                last = exc
        raise ConnectionError(f"no broker reachable ({type(last).__name__}: {last})")

    async def _held(self) -> int:
        try:
            return await self.work.backlog(self.kinds)
        except Exception:  # the count is for a log line only
            return -1

    def _broker_lost(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._attempts_when_lost = self.connect_attempts
            log.warning("the broker is unreachable (%s): reports wait in the outbox; retrying every %.0fs at most",
                        exc, MAX_BACKOFF_SECONDS)

    def _broker_works(self, held: int) -> None:
        """Called once the broker took a batch (or the connection stood with nothing to send)."""
        if self._down_since is None:
            return
        log.warning("the broker is back after %.1fs (%d connect attempts); publishing the %d reports held meanwhile",
                    time.monotonic() - self._down_since, self.connect_attempts - self._attempts_when_lost, held)
        self._down_since = None

    async def run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        held = 0
        while not self._stopping:
            broker_step = True  # whether a failure now is the broker's (else the database's)
            try:
                if not self.connected:
                    self.conn = await self._connect()
                    if self._down_since is None:
                        log.info("connected to the broker")
                    else:
                        held = await self._held()
                broker_step = False
                async with self.work.broker_batch(self.kinds, self.settings.outbox_batch) as batch:
                    if batch.rows:
                        assert self.conn is not None
                        broker_step = True
                        batch.found_on_broker(await self._resolve_in_doubt(self.conn, batch))
                        rows = batch.to_send
                        if rows:
                            broker_step = False
                            await batch.record_attempt()  # committed before any SEND (outbox_work.py)
                            broker_step = True
                            await self.conn.send_transaction(
                                [(r.destination, self._headers(r), r.body) for r in rows]
                                + [ledger_entry(batch.ledger_key)])
                        broker_step = False
                # Left without an exception: committed, the rows are gone (their attempt record is finished).
                self._broker_works(held)
                backoff = FIRST_BACKOFF_SECONDS
                if not batch.rows:
                    await self._nothing_to_do(0.2)
                    continue
                self._idle_wait = 0.0
                self.recovered += len(batch.found)
                self.published += len(rows)
                if len(batch.rows) < self.settings.outbox_batch:
                    await self._pause(LINGER_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if broker_step:
                    self._broker_lost(exc)
                    if self.conn is not None:
                        await self.conn.close()
                        self.conn = None
                else:
                    log.warning("the outbox could not be read or marked, retrying in %.1fs: %s", backoff, exc)
                await self._pause(backoff * (0.8 + random.random() * 0.4))
                backoff = min(backoff * 3, MAX_BACKOFF_SECONDS)
        try:
            await self.work.drop_own_attempt()
        except Exception as exc:  # the next publisher to start deletes it instead
            log.warning("could not delete this publisher's attempt record: %s", exc)
        if self.conn is not None:
            await self.conn.close()
