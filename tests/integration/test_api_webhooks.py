"""POST /msg-client/receive and /msg-client/delivery-notification on real PostgreSQL (workers off)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import orjson
import pytest
from conftest import TWILIO_TOKEN, WEBHOOK_TOKEN
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import InboundMessage, KeptReceipt, MessagePart, OutboxEvent
from app.domain.ids import normalise_upstream_id
from app.domain.twilio_signature import compute_signature

TOKEN = {"X-Webhook-Token": WEBHOOK_TOKEN}


def signed(path: str, form: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": compute_signature(TWILIO_TOKEN, "http://testserver" + path, form)}


async def _send(api: httpx.AsyncClient, to: str = "+14155550120", body: str = "hi", **extra: object) -> str:
    r = await api.post("/msg-client/send", json={"To": to, "Body": body, **extra})
    assert r.status_code == 200, r.text
    return str(r.json()["MessageSid"])


async def _mark_sent(sessions: async_sessionmaker[AsyncSession], sid: str, upstream_ids: list[str],
                     provider: str = "twilio") -> None:
    """What the dispatcher does when the upstream accepted the message."""
    async with sessions() as s:
        from sqlalchemy import update

        from app.db.tables import Message
        await s.execute(update(Message).where(Message.sid == sid).values(status="sent", provider=provider, due_at=None))
        await s.execute(insert(MessagePart), [
            {"message_sid": sid, "part_no": i + 1, "provider": provider, "upstream_id": normalise_upstream_id(u), "status": "sent"}
            for i, u in enumerate(upstream_ids)])
        await s.commit()


async def _reports(sessions: async_sessionmaker[AsyncSession], sid: str) -> list[dict[str, Any]]:
    async with sessions() as s:
        rows = (await s.scalars(select(OutboxEvent).where(OutboxEvent.message_sid == sid,
                                                          OutboxEvent.kind == "report"))).all()
        return [orjson.loads(r.body) | {"_headers": r.headers} for r in rows]


async def test_receive_stores_and_forwards_once(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    sms_sid = "SM" + secrets.token_hex(16)
    form = {"Body": "Hello back", "From": "+96170999888", "To": "+96170000001", "SmsSid": sms_sid,
            "NumSegments": "1"}
    for _ in range(2):
        r = await api.post("/msg-client/receive", data=form, headers=TOKEN)
        assert r.status_code == 200, r.text
    async with sessions() as s:
        n = await s.scalar(select(func.count()).select_from(InboundMessage).where(InboundMessage.upstream_sid == sms_sid))
        rows = (await s.scalars(select(OutboxEvent).where(OutboxEvent.kind == "inbound"))).all()
    assert n == 1
    mine = [orjson.loads(r.body) for r in rows if orjson.loads(r.body)["SmsSid"] == sms_sid]
    assert len(mine) == 1 and mine[0]["Body"] == "Hello back" and mine[0]["Extra"]["NumSegments"] == "1"
    assert all(r.destination == "/queue/inbound-sms" for r in rows)


async def test_receive_missing_field_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/receive", data={"Body": "x", "From": "+1"}, headers=TOKEN)
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_field"


async def test_webhook_auth_modes(api: httpx.AsyncClient) -> None:
    form = {"Body": "x", "From": "+96170999888", "To": "+96170000001", "SmsSid": "SM" + secrets.token_hex(16)}
    path = "/msg-client/receive"
    assert (await api.post(path, data=form)).status_code == 401
    assert (await api.post(path, data=form, headers={"X-Webhook-Token": "wrong"})).status_code == 403
    assert (await api.post(path, data=form, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})).status_code == 200
    basic = "Basic " + base64.b64encode(b"hook:hook-pass").decode()
    assert (await api.post(path, data=form, headers={"Authorization": basic})).status_code == 200
    bad_basic = "Basic " + base64.b64encode(b"hook:nope").decode()
    assert (await api.post(path, data=form, headers={"Authorization": bad_basic})).status_code == 403
    assert (await api.post(path, data=form, headers=signed(path, form))).status_code == 200
    tampered = signed(path, form)
    assert (await api.post(path, data={**form, "Body": "changed"}, headers=tampered)).status_code == 403


async def test_delivery_notification_drives_message_to_delivered_with_one_report(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    sid = await _send(api, channel="http")
    upstream = "SM" + secrets.token_hex(16)
    await _mark_sent(sessions, sid, [upstream])
    path = "/msg-client/delivery-notification"
    for status in ("sent", "delivered", "delivered", "sent"):
        form = {"MessageSid": upstream, "MessageStatus": status}
        r = await api.post(path, data=form, headers=signed(path, form))
        assert r.status_code == 200, r.text
    m = (await api.get(f"/msg-client/messages/{sid}")).json()
    assert m["Status"] == "delivered"
    applied = [(h["Status"], h["Applied"]) for h in m["History"] if h["Source"] == "webhook"]
    assert applied == [("sent", False), ("delivered", True), ("delivered", False), ("sent", False)]
    reports = await _reports(sessions, sid)
    assert len(reports) == 1
    assert reports[0]["MessageSID"] == sid and reports[0]["DeliveryStatus"] == "DELIVERED"
    assert reports[0]["_headers"]["type"] == "http"


async def test_failed_notification_reports_failed_with_code(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    sid = await _send(api)
    upstream = "SM" + secrets.token_hex(16)
    await _mark_sent(sessions, sid, [upstream])
    form = {"MessageSid": upstream, "SmsStatus": "undelivered", "ErrorCode": "30003"}
    r = await api.post("/msg-client/delivery-notification", data=form, headers=TOKEN)
    assert r.status_code == 200
    m = (await api.get(f"/msg-client/messages/{sid}")).json()
    assert m["Status"] == "undelivered" and m["ErrorCode"] == "30003" and m["ProviderStatusCode"] == "30003"
    (report,) = await _reports(sessions, sid)
    assert report["DeliveryStatus"] == "FAILED" and report["ProviderStatusCode"] == "30003"


async def test_notification_before_id_is_known_is_applied_later(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    from app.config import Settings
    from app.services.kept_receipts import recheck_submitted

    sid = await _send(api)
    upstream = "SM" + secrets.token_hex(16)
    r = await api.post("/msg-client/delivery-notification", data={"MessageSid": upstream, "SmsStatus": "delivered"},
                       headers=TOKEN)
    assert r.status_code == 200
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(KeptReceipt)
                              .where(KeptReceipt.upstream_id == upstream.lower())) == 1
    await _mark_sent(sessions, sid, [upstream])
    await recheck_submitted(sessions, [("twilio", [upstream])], Settings(database_url="x"))
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Status"] == "delivered"
    assert len(await _reports(sessions, sid)) == 1


async def test_notification_kept_while_its_submit_was_being_recorded_is_applied_when_it_commits(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's transaction found no part, and the part committed before the report was kept: the
    recording's own check (kept_receipts.recheck_submitted) ran before the kept row existed, so the
    webhook's service checks the kept report again once it has committed (not at the next sweep)."""
    from datetime import datetime, timedelta

    import app.db.kept_store as kept_store
    from app.domain.messages import Receipt

    sid = await _send(api)
    upstream = "SM" + secrets.token_hex(16)
    keep = kept_store.insert_kept

    async def recorded_meanwhile(s: AsyncSession, unmatched: list[Receipt], now: datetime,
                                 ttl: timedelta) -> list[int]:
        await _mark_sent(sessions, sid, [upstream])  # committed between the match and the keep
        return await keep(s, unmatched, now, ttl)

    monkeypatch.setattr(kept_store, "insert_kept", recorded_meanwhile)
    r = await api.post("/msg-client/delivery-notification", data={"MessageSid": upstream, "SmsStatus": "delivered"},
                       headers=TOKEN)
    assert r.status_code == 200, r.text
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Status"] == "delivered"
    assert len(await _reports(sessions, sid)) == 1
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(KeptReceipt)
                              .where(KeptReceipt.upstream_id == upstream.lower())) == 0


async def test_notification_bad_input(api: httpx.AsyncClient) -> None:
    path = "/msg-client/delivery-notification"
    assert (await api.post(path, data={"SmsStatus": "delivered"}, headers=TOKEN)).status_code == 400
    r = await api.post(path, data={"MessageSid": "SMx", "SmsStatus": "teleported"}, headers=TOKEN)
    assert r.status_code == 400 and r.json()["error"]["field"] == "SmsStatus"
    r = await api.post(path, content=b'{"MessageSid": "x"}', headers={**TOKEN, "content-type": "application/json"})
    assert r.status_code == 400


async def test_long_message_is_delivered_only_when_all_parts_are(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    sid = await _send(api, body="x" * 300)
    ids = [secrets.token_hex(6), secrets.token_hex(6)]
    await _mark_sent(sessions, sid, ids, provider="smsc-main")
    r = await api.post("/msg-client/delivery-notification", data={"MessageSid": ids[0], "SmsStatus": "delivered"},
                       headers=TOKEN)
    assert r.status_code == 200
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Status"] == "sent"
    await api.post("/msg-client/delivery-notification", data={"MessageSid": ids[1], "SmsStatus": "delivered"},
                   headers=TOKEN)
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Status"] == "delivered"
    assert len(await _reports(sessions, sid)) == 1


async def test_decimal_report_for_a_hex_id_is_not_guessed_when_the_provider_writes_ids_the_same(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    sid = await _send(api)
    dec = str(secrets.randbelow(10**12) + 10**11)
    await _mark_sent(sessions, sid, [format(int(dec), "x")], provider="smsc-main")  # receipt_id_format: same
    r = await api.post("/msg-client/delivery-notification", data={"MessageSid": dec, "SmsStatus": "delivered"},
                       headers=TOKEN)
    assert r.status_code == 200
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Status"] == "sent"  # kept, not matched



async def test_missing_status_names_both_spellings(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/delivery-notification", data={"MessageSid": "SMx"}, headers=TOKEN)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["field"] == "SmsStatus" and err["message"] == "SmsStatus (or MessageStatus) is required"


async def test_twilio_accepted_keeps_the_message_sent_and_read_delivers_it(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Twilio's extra words (contract §2): `accepted` is a step behind `sent`, so it is recorded, not
    applied; `read` (WhatsApp/RCS) means delivered, with the one report."""
    sid = await _send(api, channel="http")
    upstream = "SM" + secrets.token_hex(16)
    await _mark_sent(sessions, sid, [upstream])
    path = "/msg-client/delivery-notification"
    r = await api.post(path, data={"MessageSid": upstream, "SmsStatus": "accepted"}, headers=TOKEN)
    assert r.status_code == 200 and r.json()["Status"] == "queued"
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Status"] == "sent"
    r = await api.post(path, data={"MessageSid": upstream, "SmsStatus": "read"}, headers=TOKEN)
    assert r.status_code == 200 and r.json()["Status"] == "delivered"
    m = (await api.get(f"/msg-client/messages/{sid}")).json()
    assert m["Status"] == "delivered" and m["ProviderStatusCode"] == "read"
    assert [(h["Status"], h["Applied"]) for h in m["History"] if h["Source"] == "webhook"] == [
        ("queued", False), ("delivered", True)]
    (report,) = await _reports(sessions, sid)
    assert report["DeliveryStatus"] == "DELIVERED" and report["ProviderStatusCode"] == "read"
