"""The websmpp dialect against its loopback fake (real HTTP): types, hex Unicode, multi-destination
replies, error classes, status queries, balance; and through the gateway to delivered/undelivered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import api_settings, running_app

from app.config import HttpProviderConfig
from app.domain.encoding import Encoding, LongMessageMode, choose_encoding
from app.domain.ids import MessageSid, UpstreamId
from app.fakes.server import LoopbackServer
from app.fakes.websmpp import FakeWebsmppState, create_app
from app.providers.base import (
    OutboundMessage,
    PermanentError,
    RetryableError,
    RouteError,
    SubmitResult,
    UnknownOutcomeError,
)
from app.providers.http.websmpp import ERRORS, WebsmppProvider, message_type

PASSWORD = "w3bsmpp-pass"


def msg(to: str, body: str = "hello") -> OutboundMessage:
    return OutboundMessage(sid=MessageSid("SM1"), to=to, sender="Test", body=body, encoding=choose_encoding(body),
                           long_message_mode=LongMessageMode.SPLIT)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeWebsmppState, str]]:
    state = FakeWebsmppState(password=PASSWORD)
    async with LoopbackServer(create_app(state)) as server:
        yield state, f"{server.url}/websmpp"


async def started(url: str, **kw: Any) -> WebsmppProvider:
    p = WebsmppProvider(HttpProviderConfig(**{"name": "ams", "dialect": "websmpp", "url": url, "username": "user",
                                              "password": PASSWORD, "timeout": 2.0, **kw}))
    await p.start(None)  # type: ignore[arg-type]
    return p


@pytest.mark.parametrize(("text", "kind", "sent"), [
    ("testing English message", "1", "testing English message"),
    ("testing unicode message", "1", "testing unicode message"),
    ("Prix: 10 © 2026", "2", "Prix: 10 © 2026".encode("utf-16-be").hex().upper()),  # auto: UCS-2
    ("اختبار رسالة عربية", "4", "اختبار رسالة عربية"),
    ("Привет", "2", "Привет".encode("utf-16-be").hex().upper()),
    ("A&B #1", "2", "A&B #1".encode("utf-16-be").hex().upper()),
])
def test_message_type(text: str, kind: str, sent: str) -> None:
    assert message_type(text, choose_encoding(text)) == (kind, sent)


def test_latin1_asked_for_is_type_3() -> None:
    assert message_type("Prix: 10 © 2026", Encoding.LATIN1) == ("3", "Prix: 10 © 2026")


def test_seed_example_hex() -> None:
    assert message_type("testing unicode message", Encoding.UCS2)[1] == (
        "00740065007300740069006E006700200075006E00690063006F006400650020006D006500730073006100670065")


def test_every_seed_code_is_classified() -> None:
    assert sorted(ERRORS) == [f"HTTP{i:02d}" for i in range(1, 27)]


async def test_batch_submit_status_and_balance(fake: tuple[FakeWebsmppState, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state, url = fake
    state.forced = {"999": "HTTP09"}
    p = await started(url)
    out = await p.submit_many([msg("+9617000001"), msg("+9617000999"), msg("+9617000002"), msg("+9617000003", "other")])
    assert isinstance(out[0], SubmitResult) and isinstance(out[2], SubmitResult)
    assert isinstance(out[1], PermanentError) and out[1].code == "HTTP09"
    assert len(state.requests) == 2 and state.requests[0]["mno"] == "9617000001,9617000999,9617000002"
    uid = out[0].upstream_ids[0]
    assert await p.query_status(uid) is None  # ATES: pending
    r = await p.query_status(uid)
    assert r is not None and r.status.value == "delivered" and r.provider_status_code == "DELIVRD"
    assert await p.query_status(UpstreamId("1")) is None
    assert await p.balance() == "Balance: 123.45"
    big = await p.submit_many([msg(f"+96170{i:06d}") for i in range(250)])
    assert all(isinstance(b, SubmitResult) for b in big) and len(state.requests) == 5  # 100 per GET
    await p.stop()
    assert PASSWORD not in caplog.text


async def test_error_classes(fake: tuple[FakeWebsmppState, str]) -> None:
    state, url = fake
    p = await started(url)
    for code, cls in (("HTTP11", RetryableError), ("HTTP18", RouteError), ("HTTP17", PermanentError)):
        state.request_error = code
        with pytest.raises(cls) as info:
            await p.submit(msg("+9617000001"))
        assert info.value.code == code
    state.request_error = None
    state.delay = 3.0  # the request went out; no answer within the 2 s timeout
    with pytest.raises(UnknownOutcomeError):
        await p.submit(msg("+9617000001"))
    state.delay = 0
    state.password = "changed"
    with pytest.raises(RouteError, match="HTTP04"):
        await p.submit(msg("+9617000001"))
    await p.stop()


async def test_gateway_polls_websmpp_to_final(module_db_url: str, fake: tuple[FakeWebsmppState, str]) -> None:
    state, url = fake
    state.dest_statuses = {"0001": ["ATES", "UNDELIV"]}
    settings = api_settings(
        module_db_url, broker_url="stomp://127.0.0.1:1", webhook_auth="token:x",
        providers=[{"name": "ams", "type": "http", "dialect": "websmpp", "url": url, "username": "user",
                    "password": PASSWORD, "poll_interval": 0.2}],
        routes=[{"channel": "smpp", "prefix": "+961", "providers": ["ams"]}],
    )
    async with running_app(settings, start_workers=True) as client:
        a = (await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "hi", "From": "Test"})).json()
        b = (await client.post("/msg-client/send", json={"To": "+96170120001", "Body": "hi", "From": "Test"})).json()
        for sid, want, code in ((a["MessageSid"], "delivered", "DELIVRD"), (b["MessageSid"], "undelivered", "UNDELIV")):
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                m = (await client.get(f"/msg-client/messages/{sid}")).json()
                if m["Status"] == want or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert (m["Status"], m["ProviderStatusCode"]) == (want, code)
