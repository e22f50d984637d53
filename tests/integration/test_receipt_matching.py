"""Which part a status report lands on (issue #13 item 10, 11): the provider's id format, the receipt
window, the most recent part that is not final, and kept reports — on real PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.db.kept_store as kept_store
import app.services.dispatching as dispatching_module
import app.services.kept_receipts as kept_receipts_module
from app.config import Settings
from app.db.tables import KeptReceipt, Message, MessagePart, StatusEvent, utcnow
from app.dispatch.dispatcher import Dispatcher
from app.domain.dispatching import Claimed, Outcome, OutcomeKind
from app.domain.ids import MessageSid, UpstreamId, normalise_upstream_id
from app.domain.messages import Receipt, SubmitResult
from app.domain.status import Status
from app.metrics import Metrics
from app.services.kept_receipts import recheck_submitted
from app.services.receipts import apply_receipts, apply_to_parts, outbox_insert
from app.services.sink import DbReportSink

SETTINGS = Settings(database_url="x", receipt_timeout_seconds=72 * 3600, providers=[
    {"name": "smsc-same", "type": "smpp", "system_id": "a", "password": "p"},
    {"name": "smsc-dec", "type": "smpp", "system_id": "a", "password": "p", "receipt_id_format": "decimal"},
    {"name": "smsc-hex", "type": "smpp", "system_id": "a", "password": "p", "receipt_id_format": "hex"},
    {"name": "smsc-auto", "type": "smpp", "system_id": "a", "password": "p", "receipt_id_format": "auto"},
])


async def sent(sessions: async_sessionmaker[AsyncSession], provider: str, upstream_id: str,
               submitted_at: datetime | None = None, status: str = "sent") -> str:
    sid = "SM" + secrets.token_hex(16)
    now = utcnow()
    async with sessions() as s:
        await s.execute(insert(Message).values(
            sid=sid, status=status, to_number="+4477000000", body="x", encoding="GSM7", segments=1, channel="smpp",
            provider=provider, created_at=now, updated_at=now))
        await s.execute(insert(MessagePart).values(
            message_sid=sid, part_no=1, provider=provider, upstream_id=normalise_upstream_id(upstream_id),
            status=status, submitted_at=submitted_at or now))
        await s.commit()
    return sid


async def report(sessions: async_sessionmaker[AsyncSession], provider: str, upstream_id: str,
                 **extra: object) -> None:
    async with sessions() as s:
        await apply_receipts(s, [Receipt(provider=provider, upstream_id=UpstreamId(upstream_id), status=Status.DELIVERED,
                                         provider_status_code="DELIVRD", source=f"smpp:{provider}",
                                         **extra)], SETTINGS)  # type: ignore[arg-type]
        await s.commit()


async def status(sessions: async_sessionmaker[AsyncSession], sid: str) -> str:
    async with sessions() as s:
        return str(await s.scalar(select(Message.status).where(Message.sid == sid)))


async def kept(sessions: async_sessionmaker[AsyncSession], upstream_id: str) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(KeptReceipt)
                                  .where(KeptReceipt.upstream_id == normalise_upstream_id(upstream_id))) or 0)


def fresh_number() -> int:
    return 10**11 + secrets.randbelow(10**11)


async def test_the_provider_id_format_converts_and_same_never_guesses(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    n = fresh_number()
    dec = await sent(sessions, "smsc-dec", format(n, "x"))  # resp hex, receipt decimal
    await report(sessions, "smsc-dec", str(n))
    assert await status(sessions, dec) == "delivered"
    hexed = await sent(sessions, "smsc-hex", str(n + 1))  # resp decimal, receipt hex
    await report(sessions, "smsc-hex", format(n + 1, "x"))
    assert await status(sessions, hexed) == "delivered"
    same = await sent(sessions, "smsc-same", format(n + 2, "x"))
    await report(sessions, "smsc-same", str(n + 2))
    assert await status(sessions, same) == "sent" and await kept(sessions, str(n + 2)) == 1


async def test_auto_reads_the_same_id_before_the_other_base(sessions: async_sessionmaker[AsyncSession]) -> None:
    n = fresh_number()
    exact = await sent(sessions, "smsc-auto", str(n))
    other = await sent(sessions, "smsc-auto", format(n, "x"))
    await report(sessions, "smsc-auto", str(n))
    assert (await status(sessions, exact), await status(sessions, other)) == ("delivered", "sent")
    await report(sessions, "smsc-auto", str(int(format(n, "x"), 16)))  # the same number: exact now final
    assert await status(sessions, other) == "sent"  # exact id found (final): a duplicate, not the hex twin


async def test_the_most_recent_part_not_final_within_the_window_wins(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    now = utcnow()
    too_old = await sent(sessions, "smsc-same", uid, now - timedelta(hours=73))
    final = await sent(sessions, "smsc-same", uid, now - timedelta(minutes=5), status="delivered")
    older = await sent(sessions, "smsc-same", uid, now - timedelta(hours=1))
    newest = await sent(sessions, "smsc-same", uid, now - timedelta(minutes=10))
    await report(sessions, "smsc-same", uid)
    states = [await status(sessions, sid) for sid in (too_old, final, older, newest)]
    assert states == ["sent", "delivered", "sent", "delivered"]
    async with sessions() as s:
        history = (await s.scalars(select(StatusEvent.message_sid).where(
            StatusEvent.message_sid.in_([too_old, final, older])))).all()
    assert history == []  # nothing written to the others


async def test_a_report_for_final_parts_only_is_recorded_not_applied_nor_kept(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    sid = await sent(sessions, "smsc-same", uid, status="delivered")
    async with sessions() as s:
        await apply_receipts(s, [Receipt(provider="smsc-same", upstream_id=UpstreamId(uid), status=Status.UNDELIVERED,
                                         provider_status_code="UNDELIV", source="smpp:smsc-same")], SETTINGS)
        await s.commit()
        rows = (await s.execute(select(StatusEvent.status, StatusEvent.applied)
                                .where(StatusEvent.message_sid == sid))).all()
    assert [tuple(r) for r in rows] == [("undelivered", False)]
    assert await status(sessions, sid) == "delivered" and await kept(sessions, uid) == 0


async def test_a_kept_report_keeps_its_tlvs_and_never_lands_on_a_part_sent_long_after(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    tlvs = {"tlvs": {"cost": "0.0500", "mccmnc": "25001"}, "receipt": {"stat": "DELIVRD"}}
    overtaking, stale = secrets.token_hex(5), secrets.token_hex(5)
    await report(sessions, "smsc-same", overtaking, extra=tlvs)
    await report(sessions, "smsc-same", stale, extra=tlvs)
    async with sessions() as s:  # this one came an hour ago: its message was never recorded here
        await s.execute(update(KeptReceipt).where(KeptReceipt.upstream_id == normalise_upstream_id(stale))
                        .values(created_at=utcnow() - timedelta(hours=1)))
        await s.commit()
    first = await sent(sessions, "smsc-same", overtaking)
    later = await sent(sessions, "smsc-same", stale)  # the id reused by another message
    await recheck_submitted(sessions, [("smsc-same", [overtaking, stale])], SETTINGS)
    async with sessions() as s:
        part_tlvs = await s.scalar(select(MessagePart.tlvs).where(MessagePart.message_sid == first))
    assert await status(sessions, first) == "delivered" and part_tlvs == tlvs
    assert await status(sessions, later) == "sent"
    assert (await kept(sessions, overtaking), await kept(sessions, stale)) == (0, 1)


async def test_a_poll_answer_lands_on_the_part_asked_about(sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    asked = await sent(sessions, "smsc-same", uid, utcnow() - timedelta(hours=2))
    newer = await sent(sessions, "smsc-same", uid)  # the same id, reused since
    async with sessions() as s:
        part_id = await s.scalar(select(MessagePart.id).where(MessagePart.message_sid == asked))
        assert part_id is not None
        await apply_to_parts(s, [(part_id, Receipt(provider="smsc-same", upstream_id=UpstreamId(uid), status=Status.UNDELIVERED,
                                                   provider_status_code="UNDELIV", source="query_sm:smsc-same"))],
                             SETTINGS)
        await s.commit()
    assert (await status(sessions, asked), await status(sessions, newer)) == ("undelivered", "sent")


# A receipt and the submit response it overtook are written by two transactions that may each miss the
# other's rows: the receipt finds no part (its record is not committed yet) and is kept, while the
# record's transaction cannot see the kept receipt. Whichever commits second applies it, at once
# (not at the next sweep, nor never when the gateway stops first).
async def sending(sessions: async_sessionmaker[AsyncSession], owner: str) -> str:
    sid = "SM" + secrets.token_hex(16)
    now = utcnow()
    async with sessions() as s:
        await s.execute(insert(Message).values(
            sid=sid, status="sending", to_number="+4477000000", body="x", encoding="GSM7", segments=1,
            channel="smpp", created_at=now, updated_at=now, lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=60)))
        await s.commit()
    return sid


def accepted(sid: str, upstream_id: str) -> Outcome:
    claimed = Claimed(MessageSid(sid), "+4477000000", None, "x", "GSM7", "split", False, None, "smpp", 1,
                      "http://127.0.0.1:9/status", False)  # a callback: its outbox row is written in the record
    return Outcome(claimed, OutcomeKind.SENT, "smsc-same", SubmitResult((UpstreamId(upstream_id),)))


def receipt_for(upstream_id: str) -> Receipt:
    return Receipt(provider="smsc-same", upstream_id=UpstreamId(upstream_id), status=Status.DELIVERED,
                   provider_status_code="DELIVRD", source="smpp:smsc-same")


async def test_receipt_kept_while_its_submit_is_being_recorded_is_applied_when_the_record_commits(
        sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = format(fresh_number(), "x")
    owner = "owner-" + secrets.token_hex(4)
    dispatcher = Dispatcher(sessions, SETTINGS, {}, Metrics(), owner)  # not started: no sweep
    sid = await sending(sessions, owner)
    sink = DbReportSink(sessions, SETTINGS, Metrics())
    record_outbox = outbox_insert  # dispatching's, imported from receipts

    async def receipt_meanwhile(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
        await sink.receipts([receipt_for(upstream)])  # the record's transaction is open: kept
        await record_outbox(s, rows)

    monkeypatch.setattr(dispatching_module, "outbox_insert", receipt_meanwhile)
    await dispatcher._record([accepted(sid, upstream)])
    assert await status(sessions, sid) == "delivered"
    assert await kept(sessions, upstream) == 0


async def test_submit_recorded_while_its_receipt_is_being_kept_is_applied_when_the_receipt_commits(
        sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = format(fresh_number(), "x")
    owner = "owner-" + secrets.token_hex(4)
    dispatcher = Dispatcher(sessions, SETTINGS, {}, Metrics(), owner)  # not started: no sweep
    sid = await sending(sessions, owner)
    keep = kept_store.insert_kept

    async def record_meanwhile(s: AsyncSession, unmatched: list[Receipt], now: datetime,
                               ttl: timedelta) -> list[int]:
        await dispatcher._record([accepted(sid, upstream)])  # the receipt found no part and is not kept yet
        return await keep(s, unmatched, now, ttl)

    monkeypatch.setattr(kept_store, "insert_kept", record_meanwhile)
    await DbReportSink(sessions, SETTINGS, Metrics()).receipts([receipt_for(upstream)])
    assert await status(sessions, sid) == "delivered"
    assert await kept(sessions, upstream) == 0


# A message of one part keeps its upstream id on its own row (no message_part row): receipts find it there.
async def held(sessions: async_sessionmaker[AsyncSession], provider: str, upstream_id: str,
               sent_at: datetime | None = None) -> str:
    sid = "SM" + secrets.token_hex(16)
    now = utcnow()
    async with sessions() as s:
        await s.execute(insert(Message).values(
            sid=sid, status="sent", to_number="+4477000000", body="x", encoding="GSM7", segments=1, channel="smpp",
            provider=provider, created_at=now, updated_at=now, sent_at=sent_at or now,
            upstream_id=normalise_upstream_id(upstream_id)))
        await s.commit()
    return sid


async def part_rows(sessions: async_sessionmaker[AsyncSession], sid: str) -> list[Any]:
    async with sessions() as s:
        return list((await s.execute(select(MessagePart.part_no, MessagePart.upstream_id, MessagePart.status,
                                            MessagePart.tlvs).where(MessagePart.message_sid == sid))).all())


async def test_a_receipt_finds_an_id_held_on_the_message_row_and_writes_no_part(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    sid = await held(sessions, "smsc-same", uid)
    await report(sessions, "smsc-same", uid, extra={"receipt": {"stat": "DELIVRD"}})
    assert await status(sessions, sid) == "delivered" and await part_rows(sessions, sid) == []
    await report(sessions, "smsc-same", uid)  # a duplicate: recorded, not applied
    async with sessions() as s:
        rows = (await s.execute(select(StatusEvent.status, StatusEvent.applied)
                                .where(StatusEvent.message_sid == sid))).all()
    assert [tuple(r) for r in rows] == [("delivered", False)]


async def test_vendor_tlvs_for_a_held_id_give_the_message_its_part_row(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    sid = await held(sessions, "smsc-same", uid)
    tlvs = {"tlvs": {"mccmnc": "25001"}, "receipt": {"stat": "DELIVRD"}}
    await report(sessions, "smsc-same", uid, extra=tlvs)
    assert await status(sessions, sid) == "delivered"
    assert [tuple(r) for r in await part_rows(sessions, sid)] == [(1, normalise_upstream_id(uid), "delivered", tlvs)]
    await report(sessions, "smsc-same", uid)  # still matched once: the part row, not the row and the part
    assert len(await part_rows(sessions, sid)) == 1


async def test_a_held_id_reused_by_a_newer_message_takes_its_receipt_and_an_old_one_is_not_a_candidate(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    old = await held(sessions, "smsc-same", uid, utcnow() - timedelta(hours=73))  # outside the window
    older = await held(sessions, "smsc-same", uid, utcnow() - timedelta(hours=1))
    newer = await sent(sessions, "smsc-same", uid, utcnow() - timedelta(minutes=1))  # a part row, same id
    await report(sessions, "smsc-same", uid)
    assert [await status(sessions, s) for s in (old, older, newer)] == ["sent", "sent", "delivered"]


async def test_a_held_id_sent_only_outside_the_window_is_no_match(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    old = await held(sessions, "smsc-same", uid, utcnow() - timedelta(hours=73))
    await report(sessions, "smsc-same", uid)
    assert await status(sessions, old) == "sent"
    assert await kept(sessions, uid) == 1  # kept for a message that may still bring the id


async def test_a_receipt_kept_before_its_held_id_is_recorded_is_applied_by_the_submit_side(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    uid = secrets.token_hex(5)
    await report(sessions, "smsc-same", uid)
    assert await kept(sessions, uid) == 1
    sid = await held(sessions, "smsc-same", uid)
    await recheck_submitted(sessions, [("smsc-same", [uid])], SETTINGS)
    assert await status(sessions, sid) == "delivered" and await kept(sessions, uid) == 0


def _a_second_late(check: Any) -> Any:
    """`check`, starting a second late (the kept-receipt check after a commit, made slow)."""
    async def late(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(1.0)
        return await check(*args, **kwargs)

    return late


async def test_a_receipt_sender_is_answered_once_the_receipt_is_committed_not_after_the_kept_recheck(
        sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kept_receipts_module, "recheck_kept", _a_second_late(kept_receipts_module.recheck_kept))
    sink = DbReportSink(sessions, SETTINGS, Metrics())
    sink.start()
    try:
        upstream = format(fresh_number(), "x")  # nobody has it: kept, then rechecked
        started = asyncio.get_running_loop().time()
        await sink.receipts([receipt_for(upstream)])
        assert asyncio.get_running_loop().time() - started < 0.5  # the deliver_sm_resp may go
        assert await kept(sessions, upstream) == 1
    finally:
        await sink.stop()


async def test_an_outcome_write_reports_its_commit_before_the_kept_reports_transaction(
        sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    owner = "owner-" + secrets.token_hex(4)
    sid = await sending(sessions, owner)
    upstream = format(fresh_number(), "x")

    monkeypatch.setattr(kept_receipts_module, "recheck_submitted", _a_second_late(recheck_submitted))
    loop = asyncio.get_running_loop()
    at: list[float] = []
    started = loop.time()
    await dispatching_module.record(sessions, SETTINGS, owner, [accepted(sid, upstream)], {},
                                    lambda: at.append(loop.time()))
    assert len(at) == 1 and at[0] - started < 0.5 < loop.time() - started  # the window frees at the commit
    assert await status(sessions, sid) == "sent"


async def test_recording_submits_with_nothing_kept_opens_no_transaction(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    class NoSessions:
        kw = sessions.kw

        def __call__(self) -> AsyncSession:
            raise AssertionError("a transaction was opened")

    upstream = format(fresh_number(), "x")
    counts = await recheck_submitted(NoSessions(), [("smsc-same", [upstream])], SETTINGS)  # type: ignore[arg-type]
    assert not counts.changes
    await report(sessions, "smsc-same", upstream)  # now one is kept: the locked transaction runs
    sid = await held(sessions, "smsc-same", upstream)
    await recheck_submitted(sessions, [("smsc-same", [upstream])], SETTINGS)
    assert await status(sessions, sid) == "delivered" and await kept(sessions, upstream) == 0
