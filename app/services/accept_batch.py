"""Group commit for `/send`: concurrent requests share one INSERT and one COMMIT.

A single-recipient send is one row; committing each on its own makes the database's log flush the
bound (a few hundred commits per second on a small disk). Requests hand their rows to the batcher and
wait; one writer task inserts everything that queued while the previous commit was in progress, in one
transaction, and wakes every request whose rows it committed. No request is answered 200 before its
rows are committed, and an idle batcher adds no delay: the first request is written at once.

If a batch fails (database down, a constraint), every request in it fails with that error; nothing of a
failed batch is committed, so nothing is half-written.

On PostgreSQL a batch is ONE statement on a pooled connection outside any transaction (the send_request
rows, if any, in a data-modifying CTE of the message INSERT: `bulk.insert_together`): it is its own
transaction, committed synchronously when it returns, in one round trip. A session would take three
(BEGIN, INSERT, COMMIT), each a turn of a busy event loop, plus SQLAlchemy's compile and greenlet
hops; with 64 clients each waiting for its commit, those turns were what bounded single-recipient
sends. Up to WRITERS batches are in flight at once (each on its own connection), so a request that
arrives during a commit starts its own at once instead of waiting for that one to end.

With a dispatcher in this process (`hand_off`), messages due now are inserted already claimed by it, as
many as it has room for: `sending`, leased to it, exactly what its claim would have written. Once the
commit is done they go straight to it. That saves the claim's UPDATE (a row version on `message`
with all its index entries, the most expensive statement of the whole path) and its round trip. If
the process dies, the lease expires and another dispatcher sends them, as for a claimed message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.bulk import insert_rows, insert_together
from app.db.engine import driver_connection, postgres_engine
from app.db.tables import Message, SendRequest, utcnow
from app.domain.dispatching import Claimed, HandOff
from app.domain.ids import MessageSid
from app.domain.status import Status

log = logging.getLogger("smsgw.accept")

MAX_ROWS_PER_COMMIT = 20_000
WRITERS = 3  # batches committing at once


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    requests: list[dict[str, Any]]  # send_request rows the messages point to
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class AcceptBatcher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], writers: int = WRITERS) -> None:
        self._sessions = sessions
        self._engine = postgres_engine(sessions)
        self._queue: list[_Pending] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._max_writers = writers
        self._reserved = 0  # rows marked as claimed by `hand_off` in batches still committing
        self.commits = 0
        self.rows = 0
        self.hand_off: HandOff | None = None  # set while this process's dispatcher runs

    async def insert(self, rows: list[dict[str, Any]], requests: list[dict[str, Any]] | None = None) -> None:
        """Insert message rows (and the send_request rows they point to); returns once they are
        committed (raises what the commit raised)."""
        pending = _Pending(rows, requests or [])
        self._queue.append(pending)
        if len(self._writers) < self._max_writers:
            writer = asyncio.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        # Not shielded: a request cancelled while it waits (its client went away) cancels only its own
        # future; the writer still commits its rows with the batch and skips a future already done.
        await pending.done

    async def _write(self) -> None:
        try:
            await self._drain()
        finally:
            # Off the list in the same step as its last look at the queue: through a done-callback, which
            # runs a moment later, a request queued in between saw the writers all busy and started none,
            # and waited for ever (a request answered just before often sends its next one then).
            task = asyncio.current_task()
            if task is not None:
                self._writers.discard(task)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._take()
            count = sum(len(item.rows) for item in batch)
            hand_off = self.hand_off
            requests = [r for item in batch for r in item.requests]
            rows = [r for item in batch for r in item.rows]
            taken: list[Claimed] = []
            answered: list[bool] = []  # gains True once _answer ran
            try:
                if hand_off is not None:
                    taken = _claim_for(hand_off, hand_off.room() - self._reserved, rows, requests)
                self._reserved += len(taken)
                await self._commit(rows, requests,
                                   functools.partial(self._answer, batch, taken, hand_off, count, answered))
            except Exception as exc:  # every caller of the batch gets it; none waits forever
                if answered:  # committed and answered: what failed came after
                    log.exception("after committing %d accepted rows", count)
                    continue
                self._reserved -= len(taken)
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)

    def _answer(self, batch: list[_Pending], taken: list[Claimed], hand_off: HandOff | None, count: int,
                answered: list[bool]) -> None:
        """The batch is committed: its hand-over to the dispatcher, and every caller answered."""
        answered.append(True)
        self._reserved -= len(taken)
        self.commits += 1
        self.rows += count
        for item in batch:
            if not item.done.done():
                item.done.set_result(None)
        if taken and hand_off is not None:
            hand_off.take(taken)  # should it fail, their leases expire and they are claimed then

    async def _commit(self, rows: list[dict[str, Any]], requests: list[dict[str, Any]],
                      committed: Callable[[], None]) -> None:
        """Insert and commit, then call `committed` at once, before the connection goes back to the pool:
        that return is a turn of the event loop of its own (a median of 17 ms on a loaded gateway, as long
        as the INSERT's round trip), which every waiting request would otherwise wait for too."""
        if self._engine is not None:
            async with driver_connection(self._engine) as conn:
                await insert_together(conn, [(SendRequest.__table__, requests), (Message.__table__, rows)])
                committed()
            return
        async with self._sessions() as s:  # SQLite (`make run`)
            await insert_accepted(s, rows, requests)
            await s.commit()
            committed()

    def _take(self) -> list[_Pending]:
        """What waits, up to MAX_ROWS_PER_COMMIT rows (at least one request, however large)."""
        queue = self._queue
        count = 0
        for i, item in enumerate(queue):
            count += len(item.rows)
            if i and count > MAX_ROWS_PER_COMMIT:
                batch, self._queue = queue[:i], queue[i:]
                return batch
        self._queue = []
        return queue

    async def close(self) -> None:
        self.hand_off = None
        if self._writers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*self._writers, return_exceptions=True), 10)


async def insert_accepted(session: AsyncSession, rows: list[dict[str, Any]], requests: list[dict[str, Any]]) -> None:
    """The send_request rows, then the message rows that point to them, in `session`'s transaction."""
    if requests:
        await session.execute(insert(SendRequest), requests)
    await insert_rows(session, Message.__table__, rows)


def _claim_for(hand_off: HandOff, room: int, rows: list[dict[str, Any]],
               requests: list[dict[str, Any]]) -> list[Claimed]:
    """Mark up to `room` of the rows due now as claimed by `hand_off` (in place; every row gets the
    lease columns, one INSERT needs the same columns in all) and return them as it will send them."""
    now = utcnow()
    expires = now + timedelta(seconds=hand_off.lease_seconds)
    shared = {r["sid"]: r for r in requests}
    taken: list[Claimed] = []
    queued, sending = Status.QUEUED.value, Status.SENDING.value  # once: an enum's .value is a Python-level property
    for row in rows:
        due = room > 0 and row["status"] == queued and row["send_at"] is None
        row["lease_owner"], row["lease_expires_at"] = (hand_off.owner, expires) if due else (None, None)
        if not due:
            continue
        room -= 1
        row.update(status=sending, due_at=None, attempts=1)
        request = shared.get(row["batch_sid"]) if row["batch_sid"] else None
        body = row["body"] if request is None else request["body"]
        callback = row["status_callback"] if request is None else request["status_callback"]
        taken.append(Claimed(MessageSid(row["sid"]), row["to_number"], row["from_addr"], body, row["encoding"],
                             row["long_message_mode"], bool(row["flash"]), row["validity_period"], row["channel"],
                             1, callback, False))
    return taken
