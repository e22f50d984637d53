"""The websmpp dialect against its loopback fake (real HTTP): types, hex Unicode, multi-destination
replies, error classes, status queries, balance; and through the gateway to delivered/undelivered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import api_settings, running_app
from fakes.server import LoopbackServer
from fakes.websmpp import FakeWebsmppState, create_app

from app.config import HttpProviderConfig
from app.domain.encoding import Encoding, LongMessageMode, choose_encoding
from app.domain.ids import MessageSid, UpstreamId
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
    ("testing $@ Character", "3", "testing $@ Character"),  # the seed's own type-3 example
    ("Prix: 10£ {net}", "3", "Prix: 10£ {net}"),
    ("Prix: 10 © 2026", "2", "Prix: 10 © 2026".encode("utf-16-be").hex().upper()),  # © is not GSM 03.38
    ("اختبار رسالة عربية", "4", "اختبار رسالة عربية"),
    ("Привет", "2", "Привет".encode("utf-16-be").hex().upper()),
    ("A&B #1", "2", "A&B #1".encode("utf-16-be").hex().upper()),
])
def test_message_type(text: str, kind: str, sent: str) -> None:
    assert message_type(text, choose_encoding(text)) == (kind, sent)


def test_latin1_text_outside_gsm_goes_as_type_2_even_when_stored_as_latin1() -> None:
    # Seed 002's type 3 carries GSM 03.38's own characters (`testing $@ Character`), not Latin-1: a
    # message stored as LATIN1 (before /send refused latin1 on websmpp routes) goes as UCS-2 hex.
    assert message_type("Prix: 10 © 2026", Encoding.LATIN1) == (
        "2", "Prix: 10 © 2026".encode("utf-16-be").hex().upper())


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


async def test_seed_type3_example_goes_out_as_type_3_and_the_fake_accepts_it(
        fake: tuple[FakeWebsmppState, str]) -> None:
    state, url = fake
    p = await started(url)
    result = await p.submit(msg("+9617000001", "testing $@ Character"))
    assert isinstance(result, SubmitResult)
    assert (state.requests[-1]["type"], state.requests[-1]["text"]) == ("3", "testing $@ Character")
    result = await p.submit(msg("+9617000001", "Prix: 10 © 2026"))  # Latin-1 outside GSM: type 2, hex
    assert isinstance(result, SubmitResult) and state.requests[-1]["type"] == "2"
    await p.stop()


async def test_a_bare_id_reply_is_accepted_like_response_id(fake: tuple[FakeWebsmppState, str]) -> None:
    state, url = fake
    state.bare_ids = True
    p = await started(url)
    out = await p.submit_many([msg("+9617000001"), msg("+9617000002")])
    assert [r.upstream_ids for r in out if isinstance(r, SubmitResult)] == [
        (UpstreamId("2541524"),), (UpstreamId("2541525"),)]
    await p.stop()


@pytest.mark.parametrize(("body", "kind", "sent_length"), [
    ("a" * 200, "1", 160), ("[" * 100, "3", 80), ("Ж" * 100, "2", 70 * 4)])
async def test_cut_sends_one_message_of_its_type(fake: tuple[FakeWebsmppState, str], body: str, kind: str,
                                                 sent_length: int) -> None:
    state, url = fake
    p = await started(url)
    m = OutboundMessage(sid=MessageSid("SM1"), to="+9617000001", sender="Test", body=body,
                        encoding=choose_encoding(body), long_message_mode=LongMessageMode.CUT)
    assert isinstance(await p.submit(m), SubmitResult)
    assert (state.requests[-1]["type"], len(state.requests[-1]["text"])) == (kind, sent_length)
    await p.stop()


async def test_http24_splits_the_request_in_halves_and_sends_them_again(fake: tuple[FakeWebsmppState, str]) -> None:
    state, url = fake
    state.max_destinations = 3
    p = await started(url)
    out = await p.submit_many([msg(f"+96170000{i:02d}") for i in range(10)])
    assert all(isinstance(r, SubmitResult) for r in out), out
    accepted = [len(r["mno"].split(",")) for r in state.requests if len(r["mno"].split(",")) <= 3]
    assert sum(accepted) == 10 and len(state.requests) == 1 + 2 + 4  # 10 → 5+5 → 2+3+2+3
    assert len(set(state.ids.values())) == 10  # each number accepted once
    state.max_destinations, state.request_error = None, "HTTP24"  # even one destination is too many
    (single,) = await p.submit_many([msg("+9617000001")])
    assert isinstance(single, PermanentError) and single.code == "HTTP24"
    await p.stop()


async def test_fake_answers_as_the_seed_shows(fake: tuple[FakeWebsmppState, str]) -> None:
    state, url = fake
    async with httpx.AsyncClient() as client:
        ok = await client.get(f"{url}/websms", params={"user": "user", "pass": PASSWORD, "sid": "Test",
                                                      "mno": "96170000001", "type": "3", "text": "testing $@ Character"})
        bad = await client.get(f"{url}/websms", params={"user": "user", "pass": "x", "sid": "Test",
                                                       "mno": "96170000001", "type": "1", "text": "x"})
        status = await client.get(f"{url}/websmsstatus", params={"respId": "2541524"})
    assert ok.content == b"Response: 2541524" and bad.content == b"ERROR - HTTP04" and status.content == b"ATES"
