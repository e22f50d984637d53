"""Group commit for `/send`: concurrent requests share one INSERT and one COMMIT.

A single-recipient send is one row; committing each on its own makes the database's log flush the
bound (a few hundred commits per second on a small disk). Requests hand their rows to the batcher and
wait; one writer task inserts everything that queued while the previous commit was in progress, in one
transaction, and wakes every request whose rows it committed. No request is answered 200 before its
rows are committed, and an idle batcher adds no delay: the first request is written at once.

If a batch fails (database down, a constraint), every request in it fails with that error; nothing of a
failed batch is committed, so nothing is half-written.

With a dispatcher in this process (`hand_off`), messages due now are inserted already claimed by it, as
many as it has room for: `sending`, leased to it, exactly what its claim would have written. Once the
commit is done they go straight to it. That saves the claim's UPDATE (a row version on `message`
with all its index entries, the most expensive statement of the whole path) and its round trip. If
the process dies, the lease expires and another dispatcher sends them, as for a claimed message.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.bulk import insert_rows
from app.db.tables import Message, SendRequest, utcnow
from app.domain.dispatching import Claimed, HandOff
from app.domain.ids import MessageSid
from app.domain.status import Status

MAX_ROWS_PER_COMMIT = 20_000


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    requests: list[dict[str, Any]]  # send_request rows the messages point to
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class AcceptBatcher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        self.rows = 0
        self.hand_off: HandOff | None = None  # set while this process's dispatcher runs

    async def insert(self, rows: list[dict[str, Any]], requests: list[dict[str, Any]] | None = None) -> None:
        """Insert message rows (and the send_request rows they point to); returns once they are
        committed (raises what the commit raised)."""
        pending = _Pending(rows, requests or [])
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # Not shielded: a request cancelled while it waits (its client went away) cancels only its own
        # future; the writer still commits its rows with the batch and skips a future already done.
        await pending.done

    async def _write(self) -> None:
        while self._queue:
            batch = self._take()
            count = sum(len(item.rows) for item in batch)
            hand_off = self.hand_off
            requests = [r for item in batch for r in item.requests]
            rows = [r for item in batch for r in item.rows]
            taken = _claim_for(hand_off, rows, requests) if hand_off is not None else []
            try:
                async with self._sessions() as s:
                    if requests:
                        await s.execute(insert(SendRequest), requests)
                    await insert_rows(s, Message.__table__, rows)
                    await s.commit()
            except Exception as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            self.commits += 1
            self.rows += count
            if taken and hand_off is not None:
                hand_off.take(taken)
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)

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
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, 10)


def _claim_for(hand_off: HandOff, rows: list[dict[str, Any]], requests: list[dict[str, Any]]) -> list[Claimed]:
    """Mark up to `hand_off.room()` of the rows due now as claimed by it (in place; every row gets the
    lease columns, one INSERT needs the same columns in all) and return them as it will send them."""
    room = hand_off.room()
    now = utcnow()
    expires = now + timedelta(seconds=hand_off.lease_seconds)
    shared = {r["sid"]: r for r in requests}
    taken: list[Claimed] = []
    for row in rows:
        due = room > 0 and row["status"] == Status.QUEUED.value and row["send_at"] is None
        row["lease_owner"], row["lease_expires_at"] = (hand_off.owner, expires) if due else (None, None)
        if not due:
            continue
        room -= 1
        row.update(status=Status.SENDING.value, due_at=None, attempts=1)
        request = shared.get(row["batch_sid"]) if row["batch_sid"] else None
        body = row["body"] if request is None else request["body"]
        callback = row["status_callback"] if request is None else request["status_callback"]
        taken.append(Claimed(MessageSid(row["sid"]), row["to_number"], row["from_addr"], body, row["encoding"],
                             row["long_message_mode"], bool(row["flash"]), row["validity_period"], row["channel"],
                             1, callback, False))
    return taken
