"""Group commit for /send: concurrent requests share commits, every row is committed before its caller
returns, and a failing batch writes nothing and fails every caller in it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import driver_connection
from app.db.tables import Message, SendRequest, utcnow
from app.domain.dispatching import Claimed
from app.domain.ids import new_message_sid
from app.services import accept_batch
from app.services.accept_batch import AcceptBatcher


def row(sid: str | None = None) -> dict[str, object]:
    now = utcnow()
    return {"sid": sid or new_message_sid(), "status": "scheduled", "to_number": "+15550001111", "body": "b",
            "encoding": "GSM7", "segments": 1, "channel": "smpp", "attempts": 0, "due_at": None,
            "created_at": now, "updated_at": now}


def due_row() -> dict[str, object]:
    """A row due now, with every column a hand-over to the dispatcher reads."""
    return dict(row(), status="queued", due_at=utcnow(), send_at=None, long_message_mode="split", flash=False,
                validity_period=None, status_callback=None, from_addr=None, batch_sid=None)


async def count(sessions: async_sessionmaker[AsyncSession], sids: list[str]) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Message).where(Message.sid.in_(sids))) or 0)


async def test_concurrent_inserts_share_commits(module_sessions: async_sessionmaker[AsyncSession]) -> None:
    batcher = AcceptBatcher(module_sessions)
    rows = [row() for _ in range(300)]

    async def one(r: dict[str, object]) -> int:
        await batcher.insert([r])
        return await count(module_sessions, [str(r["sid"])])  # committed by the time insert returns

    seen = await asyncio.gather(*(one(r) for r in rows))
    assert seen == [1] * 300
    assert batcher.rows == 300 and batcher.commits < 300 / 4


async def test_a_failing_batch_writes_nothing(module_sessions: async_sessionmaker[AsyncSession]) -> None:
    batcher = AcceptBatcher(module_sessions)
    taken = row()
    await batcher.insert([taken])
    good, clash = row(), row(str(taken["sid"]))  # the second one repeats a primary key
    results = await asyncio.gather(batcher.insert([good]), batcher.insert([clash]), return_exceptions=True)
    if not any(isinstance(r, Exception) for r in results[:1]):
        # The two landed in different batches: the clash alone failed, the good row is committed.
        assert isinstance(results[1], IntegrityError) and await count(module_sessions, [str(good["sid"])]) == 1
    else:
        assert all(isinstance(r, IntegrityError) for r in results)
        assert await count(module_sessions, [str(good["sid"])]) == 0
    with pytest.raises(IntegrityError):
        await batcher.insert([row(str(taken["sid"]))])


async def _batch_rows(module_sessions: async_sessionmaker[AsyncSession], batch: str) -> tuple[int, int]:
    async with module_sessions() as s:
        requests = await s.scalar(select(func.count()).select_from(SendRequest).where(SendRequest.sid == batch))
        messages = await s.scalar(select(func.count()).select_from(Message).where(Message.batch_sid == batch))
    return int(requests or 0), int(messages or 0)


def _request(sid: str) -> dict[str, object]:
    return {"sid": sid, "api_key_id": None, "body": "shared text", "status_callback": None, "created_at": utcnow()}


async def test_a_bulk_request_and_its_messages_are_one_statement(
        module_sessions: async_sessionmaker[AsyncSession]) -> None:
    """The send_request row and the messages pointing at it land together; when one message is refused,
    neither the request row nor any of its messages is written."""
    batcher = AcceptBatcher(module_sessions)
    batch = new_message_sid()
    rows = [dict(row(), batch_sid=batch, body=None) for _ in range(3)]
    await batcher.insert(rows, [_request(batch)])
    assert await _batch_rows(module_sessions, batch) == (1, 3)

    refused = new_message_sid()
    bad = [dict(row(), batch_sid=refused, body=None), dict(row(), batch_sid=refused, body=None, to_number="+1" * 40)]
    with pytest.raises(DataError):  # to_number is longer than its column
        await batcher.insert(bad, [_request(refused)])
    assert await _batch_rows(module_sessions, refused) == (0, 0)


def _slowed(commit: Any, in_flight: list[int]) -> Any:
    """`commit` taking 0.2 s longer; `in_flight` gets how many were committing as each one began."""
    now = [0]

    async def slow(rows: list[dict[str, object]], requests: list[dict[str, object]], committed: Any) -> None:
        now[0] += 1
        in_flight.append(now[0])
        try:
            await asyncio.sleep(0.2)
            await commit(rows, requests, committed)
        finally:
            now[0] -= 1

    return slow


async def test_callers_are_answered_before_the_connection_goes_back_to_the_pool(
        module_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    real = driver_connection  # what accept_batch imported from app.db.engine

    @contextlib.asynccontextmanager
    async def slow_to_return(engine: Any) -> AsyncIterator[Any]:
        async with real(engine) as conn:
            yield conn
            await asyncio.sleep(1.0)  # a busy event loop's turn, much magnified

    monkeypatch.setattr(accept_batch, "driver_connection", slow_to_return)
    batcher = AcceptBatcher(module_sessions)
    r = row()
    started = asyncio.get_running_loop().time()
    await batcher.insert([r])
    assert asyncio.get_running_loop().time() - started < 0.5
    assert await count(module_sessions, [str(r["sid"])]) == 1  # committed before the answer
    await batcher.close()


async def test_a_request_queued_as_the_last_writer_finishes_is_written(
        module_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    returned = asyncio.Event()
    committed_rows: list[dict[str, object]] = []

    async def commit(rows: list[dict[str, object]], requests: list[dict[str, object]], committed: Any) -> None:
        committed_rows.extend(rows)
        committed()
        await returned.wait()  # the connection's return to the pool, after the callers were answered

    batcher = AcceptBatcher(module_sessions, writers=1)
    monkeypatch.setattr(batcher, "_commit", commit)
    await batcher.insert([row()])
    returned.set()  # the writer resumes first: nothing queued, it finishes
    # ... and this request queues in the same turn of the loop, before the writer's task is done.
    await asyncio.wait_for(asyncio.create_task(batcher.insert([row()])), 5)
    assert len(committed_rows) == 2
    await batcher.close()


async def test_a_request_arriving_during_a_commit_starts_its_own(
        module_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to WRITERS batches commit at once: a second request does not wait for the first one's commit,
    and a third waits for one of them."""
    for writers, expected in ((2, 2), (1, 1)):
        batcher = AcceptBatcher(module_sessions, writers=writers)
        in_flight: list[int] = []
        monkeypatch.setattr(batcher, "_commit", _slowed(batcher._commit, in_flight))
        first = asyncio.create_task(batcher.insert([row()]))
        await asyncio.sleep(0.05)  # the first batch is committing
        second = asyncio.create_task(batcher.insert([row()]))
        await asyncio.sleep(0.05)
        third = asyncio.create_task(batcher.insert([row()]))
        await asyncio.gather(first, second, third)
        assert max(in_flight) == expected, (writers, in_flight)
        assert batcher.rows == 3


class _Dispatcher:
    """A HandOff with room for `free` messages, that records what it was given."""

    owner = "test-dispatcher"
    lease_seconds = 60.0

    def __init__(self, free: int) -> None:
        self.free = free
        self.taken: list[str] = []

    def room(self) -> int:
        return self.free - len(self.taken)

    def take(self, claimed: list[Claimed]) -> None:
        self.taken += [c.sid for c in claimed]


async def test_batches_in_flight_together_never_hand_over_more_than_the_room(
        module_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    batcher = AcceptBatcher(module_sessions, writers=2)
    dispatcher = _Dispatcher(free=10)
    batcher.hand_off = dispatcher
    in_flight: list[int] = []
    monkeypatch.setattr(batcher, "_commit", _slowed(batcher._commit, in_flight))
    due = [due_row() for _ in range(16)]
    first = asyncio.create_task(batcher.insert(due[:8]))
    await asyncio.sleep(0.05)  # committing, its 8 rows claimed for the dispatcher
    await asyncio.gather(first, batcher.insert(due[8:]))
    assert in_flight == [1, 2] and len(dispatcher.taken) == 10
    async with module_sessions() as s:
        leased = await s.scalar(select(func.count()).select_from(Message).where(
            Message.sid.in_([str(r["sid"]) for r in due]), Message.lease_owner == dispatcher.owner,
            Message.status == "sending"))
    assert leased == 10


async def test_a_batch_that_cannot_be_prepared_fails_its_callers(
        module_sessions: async_sessionmaker[AsyncSession]) -> None:
    """A row the hand-off cannot read fails the batch's callers; none is left waiting."""
    batcher = AcceptBatcher(module_sessions)
    batcher.hand_off = _Dispatcher(free=10)
    incomplete = dict(row(), status="queued", send_at=None)  # no long_message_mode, flash, ...
    with pytest.raises(KeyError):
        await asyncio.wait_for(batcher.insert([incomplete]), 10)
    assert await count(module_sessions, [str(incomplete["sid"])]) == 0


async def test_callers_are_answered_even_when_the_hand_over_fails(
        module_sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture) -> None:
    class Broken(_Dispatcher):
        def take(self, claimed: list[Claimed]) -> None:
            raise RuntimeError("dispatcher gone")

    batcher = AcceptBatcher(module_sessions)
    batcher.hand_off = Broken(10)
    r = due_row()
    await asyncio.wait_for(batcher.insert([r]), 5)  # stored (leased: claimed again once the lease expires)
    assert await count(module_sessions, [str(r["sid"])]) == 1
    assert "after committing 1 accepted rows" in caplog.text
    await batcher.close()
