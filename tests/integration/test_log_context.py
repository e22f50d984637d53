"""Log lines about a message carry its MessageSid and, inside an HTTP request, the request's id.

The app runs for real (lifespan, middleware, PostgreSQL); records are captured with caplog, whose
handler gets the same `ContextFilter` that `setup_logging` puts on the production handler.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import httpx
import orjson
import pytest
from conftest import WEBHOOK_TOKEN
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tables import Message, utcnow
from app.dispatch.dispatcher import Dispatcher
from app.domain.ids import UpstreamId, new_message_sid
from app.logs import ContextFilter, JsonFormatter
from app.metrics import Metrics
from app.providers.base import (
    OutboundMessage,
    PermanentError,
    ProviderState,
    Receipt,
    ReportSink,
    RetryableError,
    SubmitResult,
)

TOKEN = {"X-Webhook-Token": WEBHOOK_TOKEN}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO, logger="smsgw")
    return caplog


def lines(caplog: pytest.LogCaptureFixture, msg: str) -> list[dict[str, Any]]:
    """The captured records with this message, as the JSON lines production would write."""
    fmt = JsonFormatter()
    return [orjson.loads(fmt.format(r)) for r in caplog.records if r.getMessage() == msg]


async def test_accept_line_has_the_message_sid_and_the_response_request_id(
        api: httpx.AsyncClient, logs: pytest.LogCaptureFixture) -> None:
    r = await api.post("/msg-client/send", json={"To": "+14155550170", "Body": "hello", "channel": "smpp"})
    assert r.status_code == 200
    [line] = lines(logs, "message accepted")
    assert line["level"] == "info" and line["logger"] == "smsgw.api"
    assert line["message_sid"] == r.json()["MessageSid"]
    assert line["request_id"] == r.headers["X-Request-ID"] and len(line["request_id"]) == 16
    assert line["to"] == "+14155550170" and line["channel"] == "smpp" and line["segments"] == 1
    assert "hello" not in orjson.dumps(line).decode()  # the body is never logged


async def test_a_client_request_id_is_the_one_logged(api: httpx.AsyncClient, logs: pytest.LogCaptureFixture) -> None:
    r = await api.post("/msg-client/send", json={"To": "+14155550171", "Body": "x"},
                       headers={"X-Request-ID": "trace-7f3a.1"})
    assert r.headers["X-Request-ID"] == "trace-7f3a.1"
    [line] = lines(logs, "message accepted")
    assert line["request_id"] == "trace-7f3a.1" and line["message_sid"] == r.json()["MessageSid"]
    assert line["channel"] == "smpp"  # the default channel


async def test_a_request_id_unfit_for_a_log_line_is_replaced(api: httpx.AsyncClient,
                                                             logs: pytest.LogCaptureFixture) -> None:
    r = await api.post("/msg-client/send", json={"To": "+14155550172", "Body": "x"},
                       headers={"X-Request-ID": "a b\" level=error"})
    given = r.headers["X-Request-ID"]
    assert given != "a b\" level=error" and len(given) == 16
    [line] = lines(logs, "message accepted")
    assert line["request_id"] == given


async def test_bulk_send_logs_one_info_line_and_a_debug_line_per_message(
        api: httpx.AsyncClient, logs: pytest.LogCaptureFixture) -> None:
    logs.set_level(logging.DEBUG, logger="smsgw.api")
    to = [f"+1415555018{i}" for i in range(3)]
    r = await api.post("/msg-client/send", json={"To": to, "Body": "bulk"})
    sids = [m["MessageSid"] for m in r.json()["Messages"]]
    rid = r.headers["X-Request-ID"]
    [batch] = lines(logs, "messages accepted")
    assert batch["count"] == 3 and batch["request_id"] == rid and "message_sid" not in batch
    assert batch["first_message_sid"] == sids[0] and batch["last_message_sid"] == sids[-1]
    per = [r for r in logs.records if r.getMessage() == "message accepted"]
    assert {r.levelno for r in per} == {logging.DEBUG}
    assert [(r.message_sid, r.to, r.request_id) for r in per] == [  # type: ignore[attr-defined]
        (sid, t, rid) for sid, t in zip(sids, to, strict=True)]


async def test_bulk_send_at_info_has_no_per_message_lines(api: httpx.AsyncClient,
                                                          logs: pytest.LogCaptureFixture) -> None:
    r = await api.post("/msg-client/send", json={"To": ["+14155550190", "+14155550191"], "Body": "bulk"})
    assert r.status_code == 200
    assert len(lines(logs, "messages accepted")) == 1 and lines(logs, "message accepted") == []


async def test_nothing_is_logged_per_message_at_warning(api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="smsgw")
    r = await api.post("/msg-client/send", json={"To": "+14155550192", "Body": "x"})
    assert r.status_code == 200 and [r for r in caplog.records if r.name.startswith("smsgw")] == []


async def test_status_line_from_a_webhook_has_the_sid_the_status_and_the_request_id(
        api: httpx.AsyncClient, logs: pytest.LogCaptureFixture) -> None:
    sid = (await api.post("/msg-client/send", json={"To": "+14155550173", "Body": "x"})).json()["MessageSid"]
    r = await api.post("/msg-client/delivery-notification", data={"MessageSid": sid, "SmsStatus": "delivered"},
                       headers=TOKEN)
    assert r.status_code == 200
    [line] = lines(logs, "status")
    assert line["logger"] == "smsgw.receipts" and line["message_sid"] == sid
    assert line["status"] == "delivered" and line["applied"] is True
    assert line["provider_status_code"] == "delivered" and line["request_id"] == r.headers["X-Request-ID"]

    again = await api.post("/msg-client/delivery-notification", data={"MessageSid": sid, "SmsStatus": "failed"},
                           headers=TOKEN)
    [_, dup] = lines(logs, "status")
    assert dup["applied"] is False and dup["status"] == "delivered" and dup["reported"] == "failed"
    assert dup["request_id"] == again.headers["X-Request-ID"]


async def test_a_receipt_for_an_unknown_id_is_logged_as_kept(api: httpx.AsyncClient,
                                                             logs: pytest.LogCaptureFixture) -> None:
    upstream = "up-" + secrets.token_hex(6)
    r = await api.post("/msg-client/delivery-notification", data={"MessageSid": upstream, "SmsStatus": "delivered"},
                       headers=TOKEN)
    assert r.status_code == 200
    assert lines(logs, "status") == []
    [line] = lines(logs, "status kept")
    assert line["upstream_id"] == upstream and line["reported"] == "delivered"
    assert line["request_id"] == r.headers["X-Request-ID"]


async def test_inbound_line_has_its_sid(api: httpx.AsyncClient, logs: pytest.LogCaptureFixture) -> None:
    form = {"Body": "hi", "From": "+14155550174", "To": "+14155550000", "SmsSid": "SM" + secrets.token_hex(8)}
    r = await api.post("/msg-client/receive", data=form, headers=TOKEN)
    [line] = lines(logs, "inbound stored")
    assert line["message_sid"] == r.json()["Sid"] and line["upstream_sid"] == form["SmsSid"]
    assert line["request_id"] == r.headers["X-Request-ID"] and "hi" not in line.values()
    r = await api.post("/msg-client/receive", data=form, headers=TOKEN)
    [dup] = lines(logs, "inbound duplicate ignored")
    assert dup["message_sid"] == r.json()["Sid"]


class ScriptedProvider:
    """Accepts `+1415555020x` numbers ending in 0, asks to retry 1, refuses the rest; logs while submitting."""

    name = "scripted"
    type = "smpp"
    max_in_flight = 10

    async def start(self, sink: ReportSink) -> None:
        return None

    async def stop(self) -> None:
        return None

    def is_available(self) -> bool:
        return True

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        logging.getLogger("smsgw.smpp").info("submit_sm written")
        await asyncio.sleep(0)
        if message.to.endswith("1"):
            raise RetryableError("THROTTLED", "slow down")
        if message.to.endswith("2"):
            raise PermanentError("0x0000000B", "invalid destination")
        return SubmitResult((UpstreamId("ab12"), UpstreamId("ab13")))

    async def query_status(self, upstream_id: UpstreamId) -> Receipt | None:
        return None

    def state(self) -> ProviderState:
        return ProviderState(self.name, self.type, True)


async def test_dispatcher_lines_carry_the_sid(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                                              logs: pytest.LogCaptureFixture) -> None:
    settings = Settings(database_url=module_db_url, routes=[{"channel": "smpp", "providers": ["scripted"]}],
                        providers=[{"name": "scripted", "type": "smpp", "system_id": "x", "password": "y"}],
                        retry_base_seconds=30, retry_max_attempts=5)
    now = utcnow()
    sids = {to: new_message_sid() for to in ("+14155550200", "+14155550201", "+14155550202")}
    async with module_sessions() as s:
        await s.execute(insert(Message), [
            {"sid": sid, "status": "queued", "to_number": to, "body": "b", "encoding": "GSM7", "segments": 1,
             "channel": "smpp", "due_at": now, "created_at": now, "updated_at": now} for to, sid in sids.items()])
        await s.commit()
    d = Dispatcher(module_sessions, settings, {"scripted": ScriptedProvider()}, Metrics(), "log-test")
    d.start()
    try:
        for _ in range(200):
            if len(lines(logs, "submitted")) + len(lines(logs, "submit failed")) + len(lines(logs, "submit to retry")) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await d.stop()

    [sent] = lines(logs, "submitted")
    assert sent["message_sid"] == sids["+14155550200"] and sent["provider"] == "scripted"
    assert sent["upstream_ids"] == ["ab12", "ab13"] and sent["level"] == "info"
    [retry] = lines(logs, "submit to retry")
    assert retry["message_sid"] == sids["+14155550201"] and retry["code"] == "THROTTLED"
    assert retry["level"] == "warning" and retry["attempt"] == 1
    [failed] = lines(logs, "submit failed")
    assert failed["message_sid"] == sids["+14155550202"] and failed["code"] == "0x0000000B"
    assert failed["level"] == "warning"
    # What the provider logged while submitting carries the sid of the message it was sending.
    assert sorted(line["message_sid"] for line in lines(logs, "submit_sm written")) == sorted(sids.values())
    assert all("request_id" not in line for line in lines(logs, "submit_sm written"))
