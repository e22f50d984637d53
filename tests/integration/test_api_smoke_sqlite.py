"""The smoke subset on SQLite (the `make run` database): migrations, send, get, cancel, webhooks,
and the dispatcher's claim path without SKIP LOCKED."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx
from conftest import WEBHOOK_TOKEN

from app.config import Settings
from app.db.engine import create_engine, session_factory
from app.dispatch.dispatcher import Dispatcher
from app.metrics import Metrics


async def test_send_get_cancel_on_sqlite(sqlite_api: httpx.AsyncClient) -> None:
    r = await sqlite_api.post("/msg-client/send", json={"To": ["+14155550100", "+14155550101"], "Body": "héllo ©"})
    assert r.status_code == 200 and r.json()["Messages"][0]["Encoding"] == "UCS2"
    sid = r.json()["Messages"][0]["MessageSid"]
    m = (await sqlite_api.get(f"/msg-client/messages/{sid}")).json()
    assert (m["Status"] == "queued" and m["CreatedAt"].endswith("Z")) or "+00:00" in m["CreatedAt"]
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    s = (await sqlite_api.post("/msg-client/send", json={"To": "+14155550102", "Body": "x", "SendAt": when})).json()
    assert (await sqlite_api.delete(f"/msg-client/messages/{s['MessageSid']}")).json()["Status"] == "canceled"
    page = (await sqlite_api.get("/msg-client/messages", params={"limit": 1})).json()
    assert len(page["Messages"]) == 1 and page["NextCursor"]
    assert (await sqlite_api.get("/msg-client/messages", params={"cursor": page["NextCursor"]})).status_code == 200


async def test_webhooks_on_sqlite(sqlite_api: httpx.AsyncClient) -> None:
    form = {"Body": "hi", "From": "+96170999888", "To": "+96170000001", "SmsSid": "SM" + secrets.token_hex(16)}
    for _ in range(2):
        r = await sqlite_api.post("/msg-client/receive", data=form, headers={"X-Webhook-Token": WEBHOOK_TOKEN})
        assert r.status_code == 200
    assert r.json()["Duplicate"] is True
    r = await sqlite_api.post("/msg-client/delivery-notification", data={"MessageSid": "SMx", "SmsStatus": "sent"},
                              headers={"X-Webhook-Token": WEBHOOK_TOKEN})
    assert r.status_code == 200


async def test_dispatcher_claims_on_sqlite(sqlite_api: httpx.AsyncClient, sqlite_url: str) -> None:
    r = await sqlite_api.post("/msg-client/send", json={"To": "+14155550103", "Body": "x"})
    sid = r.json()["MessageSid"]
    engine = create_engine(sqlite_url)
    try:
        d = Dispatcher(session_factory(engine), Settings(database_url=sqlite_url), {}, Metrics(), "o")
        claimed = await d.claim(10)
        assert sid in [c.sid for c in claimed]
        assert await d.claim(10) == []
    finally:
        await engine.dispose()
