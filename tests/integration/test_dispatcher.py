"""The dispatcher on real PostgreSQL with in-memory fake providers: claiming, failover, retry, failure,
and two dispatchers sharing one database."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.engine import create_engine, session_factory
from app.db.tables import Message, MessagePart, OutboxEvent, StatusEvent, utcnow
from app.dispatch.dispatcher import Dispatcher
from app.domain.dispatching import Claimed
from app.domain.ids import UpstreamId, new_message_sid
from app.metrics import Metrics
from app.providers.base import (
    OutboundMessage,
    PartProgress,
    PermanentError,
    ProviderState,
    Receipt,
    ReportSink,
    RetryableError,
    RouteError,
    SubmitResult,
    UnknownOutcomeError,
)
from app.services import dispatching


class FakeProvider:
    """Answers from a script: a callable deciding per message, counting every submit."""

    def __init__(self, name: str, kind: str = "smpp", available: bool = True,
                 decide: Any = None, delay: float = 0.0) -> None:
        self.name = name
        self.type = kind
        self.max_in_flight = 50
        self.available = available
        self.decide = decide or (lambda m: None)
        self.delay = delay
        self.submits: Counter[str] = Counter()

    async def start(self, sink: ReportSink) -> None:
        return None

    async def stop(self) -> None:
        return None

    def is_available(self) -> bool:
        return self.available

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        self.submits[message.sid] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        error = self.decide(message)
        if error is not None:
            raise error
        return SubmitResult((UpstreamId(secrets.token_hex(8)),))

    async def query_status(self, upstream_id: UpstreamId) -> Receipt | None:
        return None

    def state(self) -> ProviderState:
        return ProviderState(self.name, self.type, self.available)


def make_settings(db_url: str, routes: Sequence[dict[str, Any]], **kw: Any) -> Settings:
    providers = {p for r in routes for p in r["providers"]}
    return Settings(
        database_url=db_url,
        providers=[{"name": n, "type": "smpp", "system_id": "x", "password": "y"} for n in sorted(providers)],
        routes=list(routes), retry_base_seconds=0.01, retry_max_seconds=0.05, **kw,
    )


async def add_messages(sessions: async_sessionmaker[AsyncSession], n: int, channel: str = "t",
                       to: str = "+14155550000") -> list[str]:
    now = utcnow()
    sids: list[str] = [new_message_sid() for _ in range(n)]
    async with sessions() as s:
        await s.execute(insert(Message), [
            {"sid": sid, "status": "queued", "to_number": to, "body": "b", "encoding": "GSM7", "segments": 1,
             "channel": channel, "due_at": now, "created_at": now, "updated_at": now} for sid in sids])
        await s.commit()
    return sids


async def wait_final(sessions: async_sessionmaker[AsyncSession], sids: Sequence[str], statuses: set[str],
                     timeout: float = 30.0) -> dict[str, Message]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with sessions() as s:
            rows = {m.sid: m for m in (await s.scalars(select(Message).where(Message.sid.in_(sids)))).all()}
        if all(r.status in statuses for r in rows.values()):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            left = Counter(r.status for r in rows.values())
            raise AssertionError(f"not final in time: {left}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def isolated(module_db_url: str) -> Any:
    """Each dispatcher test gets its own channel name, so other tests' messages are not claimed."""
    return "ch" + secrets.token_hex(4)


async def run_dispatcher(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                         providers: dict[str, Any], owner: str = "test") -> Dispatcher:
    d = Dispatcher(sessions, settings, providers, Metrics(), owner)
    d.start()
    return d


async def test_sends_and_records_upstream_ids(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                              isolated: str) -> None:
    p = FakeProvider("p1")
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}])
    sids = await add_messages(module_sessions, 20, isolated)
    d = await run_dispatcher(module_sessions, settings, {"p1": p})
    try:
        rows = await wait_final(module_sessions, sids, {"sent"})
    finally:
        await d.stop()
    assert all(r.provider == "p1" for r in rows.values())
    assert all(p.submits[s] == 1 for s in sids)
    assert all(r.upstream_id and r.sent_at is not None for r in rows.values())  # one part: the id on the row
    async with module_sessions() as s:
        assert await s.scalar(select(func.count()).select_from(MessagePart)
                              .where(MessagePart.message_sid.in_(sids))) == 0


async def test_route_error_fails_over_to_next_provider(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                                       isolated: str) -> None:
    first = FakeProvider("first", decide=lambda m: RouteError("NO ROUTES"))
    second = FakeProvider("second")
    down = FakeProvider("down", available=False)
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["down", "first", "second"]}])
    sids = await add_messages(module_sessions, 5, isolated)
    d = await run_dispatcher(module_sessions, settings, {"first": first, "second": second, "down": down})
    try:
        rows = await wait_final(module_sessions, sids, {"sent"})
    finally:
        await d.stop()
    assert {r.provider for r in rows.values()} == {"second"}
    assert sum(down.submits.values()) == 0 and sum(first.submits.values()) == 5


async def test_permanent_error_fails_with_code_and_one_report(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                                             isolated: str) -> None:
    p = FakeProvider("p1", decide=lambda m: PermanentError("0x0000000B", "invalid destination"))
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}])
    sids = await add_messages(module_sessions, 3, isolated)
    d = await run_dispatcher(module_sessions, settings, {"p1": p})
    try:
        rows = await wait_final(module_sessions, sids, {"failed"})
    finally:
        await d.stop()
    assert {r.provider_status_code for r in rows.values()} == {"0x0000000B"}
    async with module_sessions() as s:
        reports = (await s.scalars(select(OutboxEvent).where(OutboxEvent.message_sid.in_(sids)))).all()
    assert len(reports) == 3
    body = orjson.loads(reports[0].body)
    assert body["DeliveryStatus"] == "FAILED" and body["ProviderStatusCode"] == "0x0000000B"
    assert reports[0].headers["type"] == isolated


async def test_retryable_errors_back_off_then_succeed(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                                      isolated: str) -> None:
    calls: Counter[str] = Counter()

    def flaky(m: OutboundMessage) -> Exception | None:
        calls[m.sid] += 1
        return RetryableError("0x00000058", "throttled") if calls[m.sid] < 3 else None

    p = FakeProvider("p1", decide=flaky)
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}])
    sids = await add_messages(module_sessions, 4, isolated)
    d = await run_dispatcher(module_sessions, settings, {"p1": p})
    try:
        rows = await wait_final(module_sessions, sids, {"sent"})
    finally:
        await d.stop()
    assert all(p.submits[s] == 3 for s in sids)
    assert all(r.attempts == 3 for r in rows.values())
    async with module_sessions() as s:
        retries = await s.scalar(select(func.count()).select_from(StatusEvent).where(
            StatusEvent.message_sid.in_(sids), StatusEvent.status == "queued"))
    assert retries == 8


async def test_exhausted_retries_fail(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str) -> None:
    p = FakeProvider("p1", decide=lambda m: RetryableError("HTTP503"))
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}], retry_max_attempts=3)
    sids = await add_messages(module_sessions, 2, isolated)
    d = await run_dispatcher(module_sessions, settings, {"p1": p})
    try:
        rows = await wait_final(module_sessions, sids, {"failed"})
    finally:
        await d.stop()
    assert all(p.submits[s] == 3 for s in sids)
    assert {r.provider_status_code for r in rows.values()} == {"HTTP503"}


async def test_http_unknown_outcome_is_not_resubmitted(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                                       isolated: str) -> None:
    p = FakeProvider("p1", kind="http", decide=lambda m: UnknownOutcomeError("ReadTimeout"))
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}])
    sids = await add_messages(module_sessions, 2, isolated)
    d = await run_dispatcher(module_sessions, settings, {"p1": p})
    try:
        rows = await wait_final(module_sessions, sids, {"failed"})
    finally:
        await d.stop()
    assert all(p.submits[s] == 1 for s in sids)
    assert {r.provider_status_code for r in rows.values()} == {"UNKNOWN_OUTCOME"}


async def test_longest_prefix_route_wins(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str) -> None:
    general, lebanon = FakeProvider("general"), FakeProvider("lebanon")
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["general"]},
                                      {"channel": isolated, "prefix": "+961", "providers": ["lebanon"]}])
    lb = await add_messages(module_sessions, 2, isolated, to="+96170123456")
    us = await add_messages(module_sessions, 2, isolated, to="+14155550000")
    d = await run_dispatcher(module_sessions, settings, {"general": general, "lebanon": lebanon})
    try:
        rows = await wait_final(module_sessions, lb + us, {"sent"})
    finally:
        await d.stop()
    assert {rows[s].provider for s in lb} == {"lebanon"} and {rows[s].provider for s in us} == {"general"}


async def test_expired_lease_is_claimed_again(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str) -> None:
    p = FakeProvider("p1")
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}])
    (sid,) = await add_messages(module_sessions, 1, isolated)
    async with module_sessions() as s:  # as if a process claimed it and died
        await s.execute(update(Message).where(Message.sid == sid).values(
            status="sending", due_at=None, lease_owner="dead", lease_expires_at=utcnow()))
        await s.commit()
    d = await run_dispatcher(module_sessions, settings, {"p1": p})
    try:
        await wait_final(module_sessions, [sid], {"sent"}, timeout=15)
    finally:
        await d.stop()
    assert p.submits[sid] == 1


async def test_two_dispatchers_submit_each_message_exactly_once(module_db_url: str, isolated: str) -> None:
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}], dispatch_batch=200)
    engines: list[AsyncEngine] = [create_engine(module_db_url, pool_size=5) for _ in range(2)]
    makers = [session_factory(e) for e in engines]
    shared = FakeProvider("p1", delay=0.001)
    shared.max_in_flight = 200
    sids = await add_messages(makers[0], 5000, isolated)
    ds = [Dispatcher(makers[i], settings, {"p1": shared}, Metrics(), f"owner-{i}") for i in range(2)]
    for d in ds:
        d.start()
    try:
        await wait_final(makers[0], sids, {"sent"}, timeout=120)
    finally:
        for d in ds:
            await d.stop()
        for e in engines:
            await e.dispose()
    assert len(shared.submits) == 5000
    assert max(shared.submits.values()) == 1


async def test_busy_primary_fails_over_and_retries_when_all_are_busy(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                                                     isolated: str) -> None:
    busy = FakeProvider("busy", decide=lambda m: RetryableError("HTTP503"))
    spare = FakeProvider("spare")
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["busy", "spare"]}])
    sids = await add_messages(module_sessions, 3, isolated)
    d = await run_dispatcher(module_sessions, settings, {"busy": busy, "spare": spare})
    try:
        rows = await wait_final(module_sessions, sids, {"sent"})
    finally:
        await d.stop()
    assert {r.provider for r in rows.values()} == {"spare"}


class PartWiseProvider(FakeProvider):
    """A three-part message: the first attempt gets part 1 accepted and part 2 throttled; later attempts
    send what is left and answer every part's id."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[PartProgress | None] = []

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        self.submits[message.sid] += 1
        self.seen.append(message.progress)
        if message.progress is None:
            exc = RetryableError("0x00000058", "throttled", retry_after=0.01)
            exc.progress = PartProgress(self.name, 0xBEEF, 3, {1: UpstreamId("id-1")})
            raise exc
        return SubmitResult((message.progress.accepted[1], UpstreamId("id-2"), UpstreamId("id-3")))


async def test_message_stopped_part_way_resumes_at_the_same_provider_with_its_parts(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str) -> None:
    first = PartWiseProvider("first")
    backup = FakeProvider("backup")
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["first", "backup"]}])
    [sid] = await add_messages(module_sessions, 1, isolated)
    d = await run_dispatcher(module_sessions, settings, {"first": first, "backup": backup})
    try:
        await wait_final(module_sessions, [sid], {"sent"})
    finally:
        await d.stop()
    assert backup.submits[sid] == 0  # its first part is at `first`: the rest never goes elsewhere
    assert first.seen == [None, PartProgress("first", 0xBEEF, 3, {1: UpstreamId("id-1")})]
    async with module_sessions() as s:
        parts = (await s.execute(select(MessagePart.part_no, MessagePart.upstream_id, MessagePart.status,
                                        MessagePart.concat_ref)
                                 .where(MessagePart.message_sid == sid).order_by(MessagePart.part_no))).all()
    assert [tuple(p) for p in parts] == [(1, "id-1", "sent", 0xBEEF), (2, "id-2", "sent", None),
                                         (3, "id-3", "sent", None)]


class GatedProvider(FakeProvider):
    """Accepts every submit, but only once `gate` is set (submits in flight wait there)."""

    def __init__(self, name: str, gate: asyncio.Event) -> None:
        super().__init__(name)
        self.gate = gate

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        self.submits[message.sid] += 1
        await self.gate.wait()
        return SubmitResult((UpstreamId(secrets.token_hex(8)),))


async def handed(sessions: async_sessionmaker[AsyncSession], owner: str, n: int, channel: str) -> list[Claimed]:
    """Messages stored as the accept path stores them for this dispatcher: sending, leased to it."""
    now = utcnow()
    sids = [new_message_sid() for _ in range(n)]
    async with sessions() as s:
        await s.execute(insert(Message), [
            {"sid": sid, "status": "sending", "to_number": "+14155550000", "body": "b", "encoding": "GSM7",
             "segments": 1, "channel": channel, "attempts": 1, "lease_owner": owner,
             "lease_expires_at": now + timedelta(seconds=60), "created_at": now, "updated_at": now} for sid in sids])
        await s.commit()
    return [Claimed(sid, "+14155550000", None, "b", "GSM7", "split", False, None, channel, 1, None, False)
            for sid in sids]


async def test_handed_over_messages_start_within_the_window_and_unstarted_ones_are_given_back_on_stop(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str) -> None:
    gate = asyncio.Event()
    p = GatedProvider("p1", gate)
    p.max_in_flight = 2  # a window of 4 (twice the providers' capacity)
    settings = make_settings(module_db_url, [{"channel": isolated, "providers": ["p1"]}], dispatch_handoff_max=10)
    owner = "handoff-" + secrets.token_hex(3)
    d = await run_dispatcher(module_sessions, settings, {"p1": p}, owner)
    msgs = await handed(module_sessions, owner, 8, isolated)
    assert d.room() == 10
    d.take(msgs)
    await asyncio.sleep(0.2)
    # 4 started (2 of them submitting, the provider's own limit), 4 waiting in the hand-off backlog
    assert set(p.submits) == {m.sid for m in msgs[:2]} and d.room() == 10 - 4 - 4
    gate.set()
    await wait_final(module_sessions, [m.sid for m in msgs], {"sent"})  # the rest start as outcomes land
    gate.clear()
    more = await handed(module_sessions, owner, 6, isolated)
    d.take(more)
    await asyncio.sleep(0.2)
    stopping = asyncio.create_task(d.stop())
    await asyncio.sleep(0.2)
    gate.set()
    await stopping
    rows = await wait_final(module_sessions, [m.sid for m in more], {"sent", "queued"}, timeout=5)
    started = {m.sid for m in more[:4]}
    assert all(rows[sid].status == "sent" for sid in started)
    given_back = [rows[m.sid] for m in more[4:]]
    assert all(r.status == "queued" and r.due_at is not None and r.lease_owner is None and r.attempts == 0
               for r in given_back)  # due again for any dispatcher, never submitted
    assert all(p.submits[m.sid] == 0 for m in more[4:])


async def leases(sessions: async_sessionmaker[AsyncSession], sids: Sequence[str]) -> dict[str, Any]:
    async with sessions() as s:
        rows = (await s.execute(select(Message.sid, Message.lease_expires_at).where(Message.sid.in_(sids)))).all()
    return {r[0]: r[1] for r in rows}


async def window_of_two(sessions: async_sessionmaker[AsyncSession], url: str, channel: str,
                        name: str) -> tuple[asyncio.Event, GatedProvider, Dispatcher, list[Claimed]]:
    """A dispatcher with a one-second lease and a window of 2 (its provider's limit 1, submits held at the
    gate), and 4 messages stored as handed over to it."""
    gate = asyncio.Event()
    p = GatedProvider("p1", gate)
    p.max_in_flight = 1
    settings = make_settings(url, [{"channel": channel, "providers": ["p1"]}], dispatch_lease_seconds=1)
    owner = f"{name}-{secrets.token_hex(3)}"
    d = await run_dispatcher(sessions, settings, {"p1": p}, owner)
    return gate, p, d, await handed(sessions, owner, 4, channel)


async def test_a_handed_over_message_still_waiting_late_in_its_lease_is_leased_again_and_sent_once(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str,
        caplog: pytest.LogCaptureFixture) -> None:
    gate, p, d, msgs = await window_of_two(module_sessions, module_db_url, isolated, "renew")
    sids = [m.sid for m in msgs]
    async with module_sessions() as s:  # leased for one second, as the accept path would with this lease
        await s.execute(update(Message).where(Message.sid.in_(sids))
                        .values(lease_expires_at=utcnow() + timedelta(seconds=1)))
        await s.commit()
    before = await leases(module_sessions, sids)
    try:
        d.take(msgs)
        await asyncio.sleep(1.5)  # past 3/4 of the first lease, and past the lease itself
        after = await leases(module_sessions, sids)
        gate.set()
        rows = await wait_final(module_sessions, sids, {"sent"})
    finally:
        await d.stop()
    waiting = sids[2:]  # the window took the first two at once
    assert all(after[sid] > before[sid] + timedelta(seconds=0.4) for sid in waiting)  # leased again
    assert all(r.status == "sent" for r in rows.values())
    assert all(p.submits[sid] == 1 for sid in sids)  # each once, none given back
    assert "waited too long" not in caplog.text


async def test_a_handed_over_message_no_longer_leased_to_its_dispatcher_is_never_started(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str,
        caplog: pytest.LogCaptureFixture) -> None:
    gate, p, d, msgs = await window_of_two(module_sessions, module_db_url, isolated, "lost")
    taken_elsewhere = [m.sid for m in msgs[2:]]
    async with module_sessions() as s:  # as if their lease had expired and another dispatcher claimed them
        await s.execute(update(Message).where(Message.sid.in_(taken_elsewhere)).values(lease_owner="elsewhere"))
        await s.commit()
    try:
        d.take(msgs)
        await asyncio.sleep(1.0)  # the renewal finds them leased to another
        gate.set()
        await wait_final(module_sessions, [m.sid for m in msgs[:2]], {"sent"})
        await asyncio.sleep(0.2)
    finally:
        await d.stop()
    assert all(p.submits[sid] == 0 for sid in taken_elsewhere)
    assert "2 handed-over messages were no longer leased to this dispatcher: dropped" in caplog.text


async def test_a_handed_over_message_that_could_not_be_leased_again_is_given_back_at_its_deadline_and_sent_once(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], isolated: str,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(*args: Any) -> set[str]:
        raise ConnectionError("database away")

    monkeypatch.setattr(dispatching, "renew", unreachable)
    gate, p, d, msgs = await window_of_two(module_sessions, module_db_url, isolated, "late")
    try:
        d.take(msgs)
        await asyncio.sleep(1.0)  # past 3/4 of the lease: the two waiting may not start any more
        gate.set()
        rows = await wait_final(module_sessions, [m.sid for m in msgs], {"sent"})  # given back, claimed, sent
    finally:
        await d.stop()
    assert all(r.status == "sent" for r in rows.values())
    assert all(p.submits[m.sid] == 1 for m in msgs)  # each once
    assert "renewing the leases of" in caplog.text
    assert "2 handed-over messages waited too long to start: given back" in caplog.text
