"""No cheap amplification (issue 12 item 3), on PostgreSQL over HTTP: what a many-recipient request says
once (Body, StatusCallback) is stored once, in its send_request, and still reaches the dispatcher, the
message view and the callback; a number repeated in `To` is one message; ValidityPeriod takes JSON
numbers only (item 8)."""

from __future__ import annotations

import secrets

import httpx
from conftest import api_settings, running_app
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import Message, OutboxEvent, SendRequest
from app.dispatch.dispatcher import Dispatcher
from app.metrics import Metrics

SEND = "/msg-client/send"
WEBHOOK = {"X-Webhook-Token": "hook-secret-token"}


async def _relation_bytes(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(await s.scalar(text(
            "SELECT pg_total_relation_size('message') + pg_total_relation_size('send_request')")) or 0)


async def test_many_recipients_store_body_and_callback_once(module_db_url: str,
                                                            module_sessions: async_sessionmaker[AsyncSession]) -> None:
    base = "https://8.8.8.8/cb?pad="
    callback = base + secrets.token_hex(1024)[: 2048 - len(base)]  # random: TOAST cannot compress it away
    body = secrets.token_hex(800)  # 1,600 characters, 11 segments
    recipients = [f"+1415556{i:04d}" for i in range(1000)]
    before = await _relation_bytes(module_sessions)
    async with running_app(api_settings(module_db_url)) as api:
        r = await api.post(SEND, json={"To": recipients, "Body": body, "StatusCallback": callback})
        assert r.status_code == 200, r.text
        sids = [m["MessageSid"] for m in r.json()["Messages"]]
        grown = await _relation_bytes(module_sessions) - before
        # 1,000 copies of 3.6 KB would be 3.6 MB; once, plus 1,000 short rows and their indexes, is far less.
        assert grown < 1_000_000, grown

        async with module_sessions() as s:
            inline = await s.scalar(select(func.count()).select_from(Message).where(
                Message.sid.in_(sids), (Message.body.is_not(None)) | (Message.status_callback.is_not(None))))
            requests = (await s.scalars(select(SendRequest))).all()
        assert inline == 0
        assert [(q.body, q.status_callback) for q in requests] == [(body, callback)]

        view = (await api.get(f"/msg-client/messages/{sids[17]}")).json()
        assert view["Body"] == body and view["To"] == recipients[17]

        # The dispatcher is handed the text, and a final status the callback URL, from the request row.
        claimed = await Dispatcher(module_sessions, api_settings(module_db_url), {}, Metrics(), "t").claim(5)
        assert {c.body for c in claimed} == {body} and {c.callback for c in claimed} == {callback}
        done = await api.post("/msg-client/delivery-notification", headers=WEBHOOK,
                              data={"MessageSid": claimed[0].sid, "SmsStatus": "delivered"})
        assert done.status_code == 200, done.text
        async with module_sessions() as s:
            hooks = (await s.scalars(select(OutboxEvent.destination).where(
                OutboxEvent.message_sid == claimed[0].sid, OutboxEvent.kind == "callback"))).all()
        assert list(hooks) == [callback]


async def test_a_single_recipient_keeps_its_fields_on_its_row(api: httpx.AsyncClient,
                                                              sessions: async_sessionmaker[AsyncSession]) -> None:
    r = await api.post(SEND, json={"To": "+14155550501", "Body": "solo", "StatusCallback": "https://8.8.8.8/s"})
    sid = r.json()["MessageSid"]
    async with sessions() as s:
        m = await s.get(Message, sid)
    assert m is not None and (m.body, m.status_callback, m.batch_sid) == ("solo", "https://8.8.8.8/s", None)


async def test_repeated_numbers_in_to_are_one_message_each(api: httpx.AsyncClient,
                                                           sessions: async_sessionmaker[AsyncSession]) -> None:
    to = "+1415557" + f"{secrets.randbelow(10_000):04d}"
    r = await api.post(SEND, json={"To": [to] * 10_000, "Body": "once"})
    assert r.status_code == 200, r.text
    assert [m["To"] for m in r.json()["Messages"]] == [to]
    # The same number written differently is the same number; the order first given is kept.
    r = await api.post(SEND, json={"To": f"+14155550601,{to.lstrip('+')},+14155550601,{to}", "Body": "x"})
    assert [m["To"] for m in r.json()["Messages"]] == ["+14155550601", to]
    async with sessions() as s:
        n = await s.scalar(select(func.count()).select_from(Message).where(Message.to_number == to))
    assert n == 2


async def test_validity_period_takes_json_numbers_only(api: httpx.AsyncClient) -> None:
    for bad in (True, False, "60", "1e3", 1.5, [60], {"s": 60}):
        r = await api.post(SEND, json={"To": "+14155550502", "Body": "x", "ValidityPeriod": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["field"] == "ValidityPeriod", bad
    for good in (60, 60.0, None):
        r = await api.post(SEND, json={"To": "+14155550502", "Body": "x", "ValidityPeriod": good})
        assert r.status_code == 200, (good, r.text)
