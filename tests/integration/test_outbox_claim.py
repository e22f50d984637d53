"""The outbox claim as a DELETE held open while the batch is published (app/services/outbox_work.py):
on real PostgreSQL and ActiveMQ, a crash between the broker's COMMIT and the database's leaves the
attempt record and nothing is sent twice; a published batch leaves no row behind and costs the outbox
two row versions per report; on SQLite (`make run`, embedded broker) published reports and delivered
callbacks are deleted too."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import STOMP_URL
from fakes.server import LoopbackServer
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from support.backends import row_versions, terminate_and_wait
from support.outbox import attempt_records, unpublished, wait_published, write_reports
from support.servers import free_port
from support.stomp_consumer import Consumer

from app.config import Settings
from app.db import outbox_store
from app.db.engine import create_engine, session_factory
from app.db.migrate import upgrade_to_head
from app.db.outbox_store import AttemptRecord
from app.db.tables import OutboxEvent, utcnow
from app.domain.status import Status
from app.events.callbacks import CallbackSender
from app.events.dev_broker import EmbeddedBroker
from app.events.stomp_client import StompConnection
from app.events.stomp_publisher import OutboxPublisher
from app.services import outbox_rows as outbox
from app.services.outbox_work import OutboxWork


async def _run_until_published(pub: OutboxPublisher, sessions: async_sessionmaker[AsyncSession], queue: str) -> None:
    task = asyncio.create_task(pub.run())
    try:
        await wait_published(sessions, queue, 20)
    finally:
        await pub.stop()
        await asyncio.wait([task], timeout=10)


async def _kill_the_open_claim(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Terminate the one backend of this database that sits in an open transaction (the claim) and
    wait until it is gone, as when the publishing process dies there."""
    async with sessions() as s:
        (pid,) = (await s.scalars(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"))).all()
        await terminate_and_wait(s, pid)
        await s.rollback()


async def test_a_crash_between_the_broker_commit_and_the_db_commit_is_found_on_the_queue_not_resent(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    queue = "crash-report-" + secrets.token_hex(4)
    sids = await write_reports(module_sessions, queue, 120)
    settings = Settings(database_url=module_db_url, broker_url=STOMP_URL, outbox_batch=500)
    crashed = OutboxPublisher(module_sessions, settings, "crashed")
    connect = crashed._connect

    async def connect_and_crash_after_commit() -> StompConnection:
        """The broker connection, whose confirmed COMMIT is followed by the death of the claim."""
        conn = await connect()
        send = conn.send_transaction

        async def send_then_lose_the_claim(frames: Any, timeout: float = 30.0) -> None:
            await send(frames, timeout)
            await _kill_the_open_claim(module_sessions)
            await crashed.stop()

        conn.send_transaction = send_then_lose_the_claim  # type: ignore[method-assign]
        return conn

    crashed._connect = connect_and_crash_after_commit  # type: ignore[method-assign]
    task = asyncio.create_task(crashed.run())
    await asyncio.wait([task], timeout=20)
    assert task.done() and crashed.published == 0  # its claim never committed
    # The reports are on the queue, their rows back in the outbox, and the attempt record says so.
    assert await unpublished(module_sessions, queue) == 120
    (record,) = await attempt_records(module_sessions)
    assert record.owner == "crashed" and len(record.event_ids) == 120

    survivor = OutboxPublisher(module_sessions, settings, "survivor")
    await _run_until_published(survivor, module_sessions, queue)
    assert survivor.recovered == 120 and survivor.published == 0
    assert await attempt_records(module_sessions) == []
    # Only now a consumer: one that took the in-doubt copies first would leave nothing to find.
    consumer = Consumer(queue)
    await asyncio.to_thread(consumer.start)
    try:
        seen = Counter(b["MessageSID"] for b in await consumer.wait_for(120))
    finally:
        await asyncio.to_thread(consumer.stop)
    assert set(seen) == set(sids) and max(seen.values()) == 1


async def test_a_lost_commit_receipt_puts_the_batch_in_doubt_and_the_same_publisher_finds_it(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    """In process: the broker committed but its receipt never came (a timeout). The claim rolls back,
    the attempt record stays, and the next claim looks the rows up on the queue instead of resending."""
    queue = "lost-receipt-" + secrets.token_hex(4)
    sids = await write_reports(module_sessions, queue, 50)
    pub = OutboxPublisher(module_sessions, Settings(database_url=module_db_url, broker_url=STOMP_URL), "p")
    connect = pub._connect
    lost: list[int] = []

    async def connect_once_losing_a_receipt() -> StompConnection:
        conn = await connect()
        if not lost:
            send = conn.send_transaction

            async def send_without_receipt(frames: Any, timeout: float = 30.0) -> None:
                await send(frames, timeout)
                lost.append(len(frames))
                raise TimeoutError("no RECEIPT for the COMMIT")

            conn.send_transaction = send_without_receipt  # type: ignore[method-assign]
        return conn

    pub._connect = connect_once_losing_a_receipt  # type: ignore[method-assign]
    await _run_until_published(pub, module_sessions, queue)
    assert lost == [51] and pub.recovered == 50 and pub.published == 0  # 50 reports and the ledger entry
    assert await attempt_records(module_sessions) == []
    consumer = Consumer(queue)
    await asyncio.to_thread(consumer.start)
    try:
        seen = Counter(b["MessageSID"] for b in await consumer.wait_for(50))
    finally:
        await asyncio.to_thread(consumer.stop)
    assert set(seen) == set(sids) and max(seen.values()) == 1


async def test_published_batches_leave_no_rows_and_cost_two_row_versions_per_report_and_one_per_batch(
        private_db: tuple[str, AsyncEngine]) -> None:
    url, engine = private_db
    sessions = session_factory(engine)
    queue = "versions-report-" + secrets.token_hex(4)
    await write_reports(sessions, queue, 300)
    consumer = Consumer(queue)
    await asyncio.to_thread(consumer.start)
    try:
        pub = OutboxPublisher(sessions, Settings(database_url=url, broker_url=STOMP_URL, outbox_batch=100), "p")
        await _run_until_published(pub, sessions, queue)
        seen = Counter(b["MessageSID"] for b in await consumer.wait_for(300))
    finally:
        await asyncio.to_thread(consumer.stop)
    assert pub.published == 300 and len(seen) == 300 and max(seen.values()) == 1
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
    assert await attempt_records(sessions) == []
    await engine.dispose()  # its backends exit and report their statistics
    # 300 INSERTs and 300 DELETEs; the 3 batches share one attempt record: written for the first,
    # rewritten for the other two, deleted when the publisher stops.
    expected = {"outbox_event": 600, "outbox_attempt": 4}
    got = await row_versions(url, ("outbox_event", "outbox_attempt"), expected)
    print(f"row versions per report: {sum(got.values()) / 300:.3f} ({got})")
    assert got == expected


async def test_finished_attempt_records_of_other_publishers_are_swept_and_those_in_doubt_kept(
        private_db: tuple[str, AsyncEngine]) -> None:
    _url, engine = private_db
    sessions = session_factory(engine)
    queue = "sweep-report-" + secrets.token_hex(4)
    await write_reports(sessions, queue, 2)
    async with sessions() as s:
        pending = list((await s.scalars(select(OutboxEvent.id))).all())
        now = utcnow()
        finished = await outbox_store.add_attempt(s, "stopped", [pending[-1] + 100, pending[-1] + 101], now, "k1")
        in_doubt = await outbox_store.add_attempt(s, "died", [pending[0], pending[-1] + 102], now, "k2")
        rewritten = await outbox_store.add_attempt(s, "alive", [pending[-1] + 103], now, "k3")
        await s.commit()
    async with sessions() as s:  # read as k3 before its publisher rewrote it for a new batch: not deleted
        await outbox_store.drop_unchanged_attempts(s, [AttemptRecord(rewritten, "alive", (), "an older key")])
        await s.commit()
    assert {r.id for r in await attempt_records(sessions)} == {finished, in_doubt, rewritten}
    work = OutboxWork(sessions, "sweeper")
    assert await work.drop_finished_attempts() == 2
    (left,) = await attempt_records(sessions)
    assert left.id == in_doubt  # it names a row still in the outbox: the claimer of that row resolves it


async def test_on_sqlite_published_rows_are_deleted_with_their_attempt_record(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'smsgw.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    try:
        queue = "sqlite-report"
        await write_reports(sessions, queue, 30)
        pub = OutboxPublisher(sessions, Settings(database_url=url, broker_url=f"stomp://127.0.0.1:{broker.port}",
                                                 outbox_batch=20), "p")
        task = asyncio.create_task(pub.run())
        try:
            await wait_published(sessions, queue, 20)
            assert await attempt_records(sessions) == []  # gone with its rows, while the publisher runs
            # SQLite gives the next rows the ids just deleted: no record of the last batch may name them.
            await write_reports(sessions, queue, 30)
            await wait_published(sessions, queue, 20)
        finally:
            await pub.stop()
            await asyncio.wait([task], timeout=10)
        assert pub.published == 60 and pub.recovered == 0 and broker.queue_depth(f"/queue/{queue}") == 60
        async with sessions() as s:
            assert await s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        assert await attempt_records(sessions) == []
    finally:
        await broker.stop()
        await engine.dispose()


async def test_on_sqlite_a_delivered_callback_is_deleted_and_a_given_up_one_kept(tmp_path: Path) -> None:
    async def hook(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok" if request.url.path == "/ok" else "no", 200 if request.url.path == "/ok" else 500)

    url = f"sqlite+aiosqlite:///{tmp_path / 'smsgw.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        async with LoopbackServer(Starlette(routes=[Route("/{p}", hook, methods=["POST"])])) as server:
            async with sessions() as s:
                await s.execute(insert(OutboxEvent), [
                    outbox.callback_event(url=f"{server.url}/{p}", message_sid="SM" + secrets.token_hex(16),
                                          status=Status.DELIVERED, to="+1", sender=None, error_code=None)
                    for p in ("ok", "bad")])
                await s.commit()
            settings = Settings(database_url=url, callback_max_attempts=1, callback_allow_networks="127.0.0.0/8")
            sender = CallbackSender(sessions, settings, "cb")
            task = asyncio.create_task(sender.run())
            try:
                for _ in range(100):
                    async with sessions() as s:
                        if not await s.scalar(select(func.count()).select_from(OutboxEvent).where(
                                OutboxEvent.published_at.is_(None))):
                            break
                    await asyncio.sleep(0.05)
            finally:
                await sender.stop()
                await asyncio.wait([task], timeout=5)
        async with sessions() as s:
            left = (await s.execute(select(OutboxEvent.destination, OutboxEvent.last_error,
                                           OutboxEvent.published_at))).all()
    finally:
        await engine.dispose()
    assert [(d, e) for d, e, _ in left] == [(f"{server.url}/bad", "gave up after 1 attempts: HTTP 500")]
    assert left[0].published_at is not None
