"""The status poller's transactions (app/services/polling.py) on real PostgreSQL: a due part is leased to
one poller at a time, and its answer, or its next question, is recorded in one commit."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support.backends import row_versions

from app.config import Settings
from app.db.engine import session_factory
from app.db.tables import Message, MessagePart, utcnow
from app.domain.ids import UpstreamId
from app.domain.messages import Receipt
from app.domain.status import ReportCounts, Status
from app.services.polling import claim_polls, record_answers

SETTINGS = Settings(database_url="x", providers=[
    {"name": "cp", "type": "http", "dialect": "commpeak", "url": "http://127.0.0.1:9/api", "username": "u",
     "password": "p"},
])
LEASE = timedelta(seconds=60)


async def polled_part(sessions: async_sessionmaker[AsyncSession], due: datetime) -> tuple[str, int]:
    sid = "SM" + secrets.token_hex(16)
    now = utcnow()
    async with sessions() as s:
        await s.execute(insert(Message).values(
            sid=sid, status="sent", to_number="+4477000000", from_addr="Acme", body="x", encoding="GSM7",
            segments=1, channel="http", provider="cp", created_at=now, updated_at=now))
        part_id = await s.scalar(insert(MessagePart).values(
            message_sid=sid, part_no=1, provider="cp", upstream_id=secrets.token_hex(6), status="sent",
            submitted_at=now, next_poll_at=due).returning(MessagePart.id))
        await s.commit()
    assert part_id is not None
    return sid, part_id


async def next_poll(sessions: async_sessionmaker[AsyncSession], part_id: int) -> datetime | None:
    async with sessions() as s:
        return await s.scalar(select(MessagePart.next_poll_at).where(MessagePart.id == part_id))


async def test_a_due_part_is_leased_to_one_poller_and_not_asked_again_within_the_lease(
        module_sessions: async_sessionmaker[AsyncSession]) -> None:
    now = utcnow()
    _, part_id = await polled_part(module_sessions, now - timedelta(seconds=1))
    _, later = await polled_part(module_sessions, now + timedelta(hours=1))
    claims = await asyncio.gather(*(claim_polls(module_sessions, now, 500, LEASE) for _ in range(4)))
    claimed = [p.id for due in claims for p in due]
    assert claimed.count(part_id) == 1 and later not in claimed
    (part,) = [p for due in claims for p in due if p.id == part_id]
    assert part.provider == "cp" and part.sender == "Acme" and part.upstream_id
    assert await next_poll(module_sessions, part_id) == now + LEASE  # committed: a dead poller's part comes back
    assert part_id not in [p.id for p in await claim_polls(module_sessions, now + LEASE / 2, 500, LEASE)]
    assert part_id in [p.id for p in await claim_polls(module_sessions, now + LEASE, 500, LEASE)]


async def test_answers_are_applied_and_unanswered_parts_rescheduled_in_one_commit(
        module_sessions: async_sessionmaker[AsyncSession]) -> None:
    now = utcnow()
    answered_sid, answered = await polled_part(module_sessions, now)
    _, unanswered = await polled_part(module_sessions, now)
    again = now + timedelta(minutes=5)
    answer = Receipt(provider="cp", upstream_id=UpstreamId("x"), status=Status.DELIVERED,
                     provider_status_code="DELIVERED", source="poll:cp")
    counts = ReportCounts()
    finals = await record_answers(module_sessions, SETTINGS, [(answered, answer)], [(unanswered, again)],
                                  [answered], counts)
    assert finals == [answered_sid] and counts.matched == 1
    assert (await next_poll(module_sessions, answered), await next_poll(module_sessions, unanswered)) == (None, again)
    async with module_sessions() as s:
        assert await s.scalar(select(Message.status).where(Message.sid == answered_sid)) == "delivered"


async def test_a_final_answer_writes_its_part_once(private_db: tuple[str, AsyncEngine]) -> None:
    """Applying a final answer clears next_poll_at; stopping the polling of the answered parts must not
    write that part again (issue #15's row diet: e2e-http wrote 4 versions of each part, 3 now)."""
    url, engine = private_db
    sessions = session_factory(engine)
    now = utcnow()
    sid, part_id = await polled_part(sessions, now)
    _, unanswered = await polled_part(sessions, now)
    answer = Receipt(provider="cp", upstream_id=UpstreamId("x"), status=Status.DELIVERED,
                     provider_status_code="DELIVERED", source="poll:cp")
    finals = await record_answers(sessions, SETTINGS, [(part_id, answer)], [(unanswered, now + timedelta(minutes=5))],
                                  [part_id], ReportCounts())
    assert finals == [sid] and await next_poll(sessions, part_id) is None
    await engine.dispose()  # its backends report their counts as they exit
    # Two parts inserted; then the answered part written once and the rescheduled one once.
    expected = {"message_part": 2 + 2}
    assert await row_versions(url, ("message_part",), expected) == expected


async def test_each_unanswered_part_gets_its_own_next_question(module_sessions: async_sessionmaker[AsyncSession]) -> None:
    now = utcnow()
    parts = [(await polled_part(module_sessions, now))[1] for _ in range(3)]
    when = [(pid, now + timedelta(minutes=n + 1)) for n, pid in enumerate(parts)]
    await record_answers(module_sessions, SETTINGS, [], when, [], ReportCounts())
    assert [await next_poll(module_sessions, pid) for pid in parts] == [at for _, at in when]
