"""The outbox publisher against real ActiveMQ: headers and body as the contract says, exactly once with
two replicas, nothing lost while the broker is down, a pause to gather more after a batch smaller than
the limit (none after a full one); and status callbacks over real HTTP."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import stomp
from conftest import STOMP_URL
from fakes.server import LoopbackServer
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from support.outbox import attempt_records, report_rows, wait_published, write_reports
from support.quiet import until_quiet
from support.stomp_consumer import Collector

from app.config import Settings
from app.db.tables import OutboxAttempt, OutboxEvent
from app.domain.status import Status
from app.domain.twilio_signature import validate_signature
from app.events import stomp_publisher
from app.events.callbacks import CallbackSender
from app.events.stomp_client import StompConnection
from app.events.stomp_publisher import OutboxPublisher, ledger_entry
from app.services import outbox_rows as outbox
from bench.harness import private_broker_env

ROOT = Path(__file__).resolve().parents[2]


def consume(port: int, queue: str) -> tuple[Any, Collector]:
    conn = stomp.Connection([("127.0.0.1", port)], reconnect_attempts_max=1)
    listener = Collector()
    conn.set_listener("c", listener)
    conn.connect(wait=True)
    conn.subscribe(f"/queue/{queue}", id=1, ack="auto")
    return conn, listener


async def wait_count(listener: Collector, n: int, timeout: float = 60.0) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        with listener.lock:
            if len(listener.frames) >= n:
                break
        await asyncio.sleep(0.05)
    await until_quiet(lambda: len(listener.frames))  # a late duplicate would restart the wait
    with listener.lock:
        return list(listener.frames)


def stomp_port(url: str = STOMP_URL) -> int:
    return int(url.rsplit(":", 1)[1])


async def run_publishers(pubs: list[OutboxPublisher]) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(p.run()) for p in pubs]


async def stop_all(pubs: list[OutboxPublisher], tasks: list[asyncio.Task[None]]) -> None:
    for p in pubs:
        await p.stop()
    await asyncio.wait(tasks, timeout=10)


async def test_report_has_contract_headers_and_body(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    queue = "delivery-report-" + secrets.token_hex(4)
    conn, listener = await asyncio.to_thread(consume, stomp_port(), queue)
    (sid,) = await write_reports(module_sessions, queue, 1)
    pub = OutboxPublisher(module_sessions, Settings(database_url=module_db_url, broker_url=STOMP_URL), "p1")
    tasks = await run_publishers([pub])
    try:
        frames = await wait_count(listener, 1)
    finally:
        await stop_all([pub], tasks)
        await asyncio.to_thread(conn.disconnect)
    assert len(frames) == 1
    body = orjson.loads(frames[0].body)
    assert body["MessageSID"] == sid and body["DeliveryStatus"] == "DELIVERED" and body["ProviderStatusCode"] == "DELIVRD"
    h = frames[0].headers
    assert h["type"] == "smpp" and h["persistent"] == "true" and h["content-type"] == "application/json"
    assert h["smsgw-report-id"] == f"report:{sid}" and "content-length" not in h
    async with module_sessions() as s:  # published: the row is gone
        assert await s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.message_sid == sid)) == 0


async def test_two_publishers_send_each_row_once(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    queue = "delivery-report-" + secrets.token_hex(4)
    conn, listener = await asyncio.to_thread(consume, stomp_port(), queue)
    sids = await write_reports(module_sessions, queue, 2000)
    settings = Settings(database_url=module_db_url, broker_url=STOMP_URL, outbox_batch=100)
    pubs = [OutboxPublisher(module_sessions, settings, f"owner-{i}") for i in range(2)]
    started = asyncio.get_running_loop().time()
    tasks = await run_publishers(pubs)
    try:
        frames = await wait_count(listener, 2000)
    finally:
        await stop_all(pubs, tasks)
        await asyncio.to_thread(conn.disconnect)
    elapsed = asyncio.get_running_loop().time() - started
    seen = Counter(orjson.loads(f.body)["MessageSID"] for f in frames)
    print(f"published 2000 reports with 2 publishers in {elapsed:.2f}s")
    assert set(seen) == set(sids) and max(seen.values()) == 1
    assert all(p.published > 0 for p in pubs)


async def test_a_batch_under_the_limit_waits_to_gather_more_and_a_full_one_does_not(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    queue = "delivery-report-" + secrets.token_hex(4)
    conn, listener = await asyncio.to_thread(consume, stomp_port(), queue)
    await write_reports(module_sessions, queue, 95)  # nine full batches of 10 and one of 5
    pub = OutboxPublisher(module_sessions, Settings(database_url=module_db_url, broker_url=STOMP_URL,
                                                    outbox_batch=10), "linger")
    pauses: list[tuple[float, int]] = []  # (seconds, reports published before the pause)
    original = pub._pause

    async def recorded(seconds: float) -> None:
        pauses.append((seconds, pub.published))
        await original(seconds)

    monkeypatch.setattr(pub, "_pause", recorded)
    tasks = await run_publishers([pub])
    try:
        frames = await wait_count(listener, 95)
    finally:
        await stop_all([pub], tasks)
        await asyncio.to_thread(conn.disconnect)
    assert len(frames) == 95
    # One linger, after the batch of 5 (all 95 out by then), none after the nine full ones.
    assert pauses == [(stomp_publisher.LINGER_SECONDS, 95)]


@pytest.fixture(scope="module")
async def own_broker() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """An ActiveMQ of this module's own (its folder and ports new for each run), so stopping it disturbs
    no other test; yields its URL and the services.sh environment that starts and stops it."""
    env = {**os.environ, **private_broker_env("test-outbox-mq")}
    script = str(ROOT / "scripts" / "services.sh")
    await asyncio.to_thread(subprocess.run, [script, "mq-start"], env=env, check=True)
    yield f"stomp://127.0.0.1:{env['SMSGW_MQ_STOMP_PORT']}", env
    await asyncio.to_thread(subprocess.run, [script, "mq-stop"], env=env, check=True)
    shutil.rmtree(env["SMSGW_SERVICES_DIR"], ignore_errors=True)


async def test_broker_down_delays_reports_and_loses_none(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                                        own_broker: tuple[str, dict[str, str]]) -> None:
    own_url, env = own_broker
    script = str(ROOT / "scripts" / "services.sh")
    queue = "delivery-report-" + secrets.token_hex(4)
    pub = OutboxPublisher(module_sessions, Settings(database_url=module_db_url, broker_url=own_url, outbox_batch=50), "p1")
    tasks = await run_publishers([pub])
    try:
        first = await write_reports(module_sessions, queue, 500)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(subprocess.run, [script, "mq-stop"], env=env, check=True)
        second = await write_reports(module_sessions, queue, 500)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(subprocess.run, [script, "mq-start"], env=env, check=True)
        conn, listener = await asyncio.to_thread(consume, stomp_port(own_url), queue)
        frames = await wait_count(listener, 1000, timeout=90)
        await asyncio.to_thread(conn.disconnect)
    finally:
        await stop_all([pub], tasks)
    seen = Counter(orjson.loads(f.body)["MessageSID"] for f in frames)
    assert set(seen) == set(first + second), f"missing {len(set(first + second) - set(seen))}"
    duplicates = {sid: n for sid, n in seen.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} reports arrived twice"
    for f in frames:
        assert f.headers["smsgw-report-id"] == "report:" + orjson.loads(f.body)["MessageSID"]


async def test_in_doubt_rows_of_a_batch_the_broker_committed_are_not_sent_again(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    """Rows named by an attempt record that outlived its claim (the receipt never came back, so the claim
    rolled back and the rows are there again), whose batch the broker did commit (its ledger entry is
    there): not sent twice, even though a consumer has taken every report off the queue meanwhile."""
    queue = "delivery-report-" + secrets.token_hex(4)
    sids = await write_reports(module_sessions, queue, 300)
    settings = Settings(database_url=module_db_url, broker_url=STOMP_URL, outbox_batch=100)
    first = OutboxPublisher(module_sessions, settings, "p1")
    tasks = await run_publishers([first])
    await wait_published(module_sessions, queue, 10)
    await stop_all([first], tasks)
    assert first.published == 300
    conn, listener = await asyncio.to_thread(consume, stomp_port(), queue)  # takes them all off the queue
    frames = await wait_count(listener, 300)
    # 200 of them back, with the record a claim whose COMMIT receipt was lost leaves behind, and the
    # ledger entry that batch's transaction carried.
    async with module_sessions() as s:
        ids = list((await s.scalars(insert(OutboxEvent).returning(OutboxEvent.id), report_rows(queue, sids[:200]))).all())
        record = OutboxAttempt(owner="p1", event_ids=ids, ledger_key=secrets.token_hex(16))
        s.add(record)
        await s.commit()
    broker = await StompConnection.open(STOMP_URL, None, None)
    try:
        await broker.send_transaction([ledger_entry(record.ledger_key)])
    finally:
        await broker.close()
    second = OutboxPublisher(module_sessions, settings, "p2")
    tasks = await run_publishers([second])
    await wait_published(module_sessions, queue, 10)
    await stop_all([second], tasks)
    assert second.recovered == 200 and second.published == 0
    assert await attempt_records(module_sessions) == []  # resolved: the old record is gone too
    await asyncio.sleep(0.5)  # anything sent again would arrive by now
    await asyncio.to_thread(conn.disconnect)
    seen = Counter(orjson.loads(f.body)["MessageSID"] for f in frames)
    assert set(seen) == set(sids) and max(seen.values()) == 1 and len(listener.frames) == 300


async def test_in_doubt_rows_of_a_batch_the_broker_never_committed_are_sent(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    """An attempt record with no ledger entry: the broker never committed that batch (the connection
    dropped before the COMMIT), so its rows are sent, once."""
    queue = "delivery-report-" + secrets.token_hex(4)
    async with module_sessions() as s:
        ids = list((await s.scalars(insert(OutboxEvent).returning(OutboxEvent.id),
                                    report_rows(queue, [f"SM{secrets.token_hex(16)}" for _ in range(50)]))).all())
        s.add(OutboxAttempt(owner="gone", event_ids=ids))
        await s.commit()
    conn, listener = await asyncio.to_thread(consume, stomp_port(), queue)
    pub = OutboxPublisher(module_sessions, Settings(database_url=module_db_url, broker_url=STOMP_URL), "p")
    tasks = await run_publishers([pub])
    await wait_published(module_sessions, queue, 10)
    await stop_all([pub], tasks)
    frames = await wait_count(listener, 50)
    await asyncio.to_thread(conn.disconnect)
    assert pub.recovered == 0 and pub.published == 50 and len(frames) == 50
    assert await attempt_records(module_sessions) == []


async def test_broker_urls_fail_over_in_order(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    queue = "delivery-report-" + secrets.token_hex(4)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    conn, listener = await asyncio.to_thread(consume, stomp_port(), queue)
    sids = await write_reports(module_sessions, queue, 20)
    settings = Settings(database_url=module_db_url, broker_url=f"stomp://127.0.0.1:{dead},{STOMP_URL}")
    pub = OutboxPublisher(module_sessions, settings, "p1")
    tasks = await run_publishers([pub])
    try:
        frames = await wait_count(listener, 20)
    finally:
        await stop_all([pub], tasks)
        await asyncio.to_thread(conn.disconnect)
    assert sorted(orjson.loads(f.body)["MessageSID"] for f in frames) == sorted(sids)


async def test_status_callbacks_are_signed_retried_and_given_up(module_db_url: str,
                                                                module_sessions: async_sessionmaker[AsyncSession]) -> None:
    received: list[tuple[str, dict[str, str], str]] = []
    fail_first: Counter[str] = Counter()

    async def hook(request: Request) -> PlainTextResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        url = str(request.url)
        received.append((request.url.path, form, request.headers.get("x-twilio-signature", "")))
        if request.url.path == "/flaky" and fail_first[form["MessageSid"]] < 2:
            fail_first[form["MessageSid"]] += 1
            return PlainTextResponse("busy", status_code=500)
        if request.url.path == "/broken":
            return PlainTextResponse("no", status_code=500)
        assert url
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route(p, hook, methods=["POST"]) for p in ("/ok", "/flaky", "/broken")])
    async with LoopbackServer(app) as server:
        rows = [outbox.callback_event(url=f"{server.url}{path}", message_sid="SM" + secrets.token_hex(16),
                                      status=Status.DELIVERED, to="+1", sender=None, error_code=None)
                for path in ("/ok", "/flaky", "/broken")]
        async with module_sessions() as s:
            await s.execute(insert(OutboxEvent), rows)
            await s.commit()
        settings = Settings(database_url=module_db_url, callback_max_attempts=3, callback_signing_token="sign-me",
                            callback_allow_networks="127.0.0.0/8")  # the hook listens on loopback
        sender = CallbackSender(module_sessions, settings, "cb")
        task = asyncio.create_task(sender.run())
        try:
            deadline = asyncio.get_running_loop().time() + 40
            while asyncio.get_running_loop().time() < deadline:
                async with module_sessions() as s:
                    left = await s.scalar(select(func.count()).select_from(OutboxEvent).where(
                        OutboxEvent.kind == "callback", OutboxEvent.published_at.is_(None)))
                if left == 0:
                    break
                async with module_sessions() as s:  # skip the backoff waits in the test
                    from sqlalchemy import update

                    from app.db.tables import utcnow
                    await s.execute(update(OutboxEvent).where(OutboxEvent.kind == "callback").values(available_at=utcnow()))
                    await s.commit()
                sender.notify()
                await asyncio.sleep(0.2)
        finally:
            await sender.stop()
            await asyncio.wait([task], timeout=5)
    paths = Counter(p for p, _, _ in received)
    assert paths["/ok"] == 1 and paths["/flaky"] == 3 and paths["/broken"] == 3
    for path, form, signature in received:
        assert validate_signature("sign-me", f"{server.url}{path}", form, signature)
    async with module_sessions() as s:
        broken = await s.scalar(select(OutboxEvent).where(OutboxEvent.destination.endswith("/broken")))
        kept = (await s.scalars(select(OutboxEvent.destination).where(
            OutboxEvent.kind == "callback", OutboxEvent.destination.startswith(server.url)))).all()
    assert broken is not None and broken.last_error and broken.last_error.startswith("gave up after 3")
    assert broken.attempts == 3 and broken.published_at is not None
    assert kept == [f"{server.url}/broken"]  # delivered callbacks leave no row; a given-up one stays as its record
