"""The commpeak dialect against its loopback fake (real HTTP), and through the whole gateway: status
polling to delivered/undelivered, failover to bulksms on NO ROUTES or when commpeak is down, and no
password in any log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import api_settings, running_app
from fakes.bulksms import BulksmsFakeState
from fakes.bulksms import create_app as bulksms_app
from fakes.commpeak import FakeCommpeakState, create_app
from fakes.server import LoopbackServer
from support.gateway import wait_status

from app.config import HttpProviderConfig
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid, UpstreamId
from app.providers.base import OutboundMessage, RetryableError, RouteError, UnknownOutcomeError
from app.providers.http.commpeak import CommpeakProvider

PASSWORD = "s3cr3t-commpeak-pw"


def msg(to: str = "+96170123456", body: str = "hello") -> OutboundMessage:
    return OutboundMessage(sid=MessageSid("SM1"), to=to, sender="Acme", body=body, encoding=Encoding.GSM7,
                           long_message_mode=LongMessageMode.SPLIT)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeCommpeakState, str]]:
    state = FakeCommpeakState(password=PASSWORD)
    async with LoopbackServer(create_app(state)) as server:
        yield state, f"{server.url}/api"


def provider(url: str, **kw: Any) -> CommpeakProvider:
    cfg = HttpProviderConfig(**{"name": "commpeak", "dialect": "commpeak", "url": url, "username": "user",
                                "password": PASSWORD, "timeout": 2.0, **kw})
    return CommpeakProvider(cfg)


async def test_submit_get_and_post_and_query(fake: tuple[FakeCommpeakState, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state, url = fake
    for method in ("GET", "POST"):
        p = provider(url, method=method)
        await p.start(None)  # type: ignore[arg-type]
        res = await p.submit(msg(body="long " * 50))
        (uid,) = res.upstream_ids
        assert uid.startswith("alss-")
        sent = state.received[-1]
        assert sent["dnis"] == "96170123456" and sent["ani"] == "Acme" and sent["command"] == "submit"
        assert sent["longMessageMode"] == "split" and sent["message"] == "long " * 50
        assert await p.query_status(uid) is None  # ENROUTE first
        r = await p.query_status(uid)
        assert r is not None and r.status.value == "delivered" and r.provider_status_code == "DELIVRD"
        assert await p.query_status(UpstreamId("alss-unknown")) is None  # "not found" is not final
        await p.stop()
    assert PASSWORD not in caplog.text


async def test_errors_are_classified(fake: tuple[FakeCommpeakState, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state, url = fake
    p = provider(url)
    await p.start(None)  # type: ignore[arg-type]
    state.no_routes_prefixes = ("961",)
    with pytest.raises(RouteError, match="NO ROUTES"):
        await p.submit(msg())
    state.no_routes_prefixes = ()
    state.down = True
    with pytest.raises(RetryableError, match="HTTP503"):
        await p.submit(msg())
    state.down = False
    state.password = "other"
    with pytest.raises(RouteError, match="Incorrect password"):
        await p.submit(msg())
    state.username = "nobody"
    with pytest.raises(RouteError, match="Unknown username"):
        await p.submit(msg())
    state.username, state.password = "user", PASSWORD
    state.delay = 3.0
    with pytest.raises(UnknownOutcomeError):
        await p.submit(msg())
    state.delay = 0
    await p.stop()
    refused = provider("http://127.0.0.1:9/api")
    await refused.start(None)  # type: ignore[arg-type]
    with pytest.raises(RetryableError):
        await refused.submit(msg())
    await refused.stop()
    assert PASSWORD not in caplog.text
    assert p.last_error is not None and PASSWORD not in p.last_error


@pytest.mark.parametrize(("setup", "code", "text"), [
    ({"username": "nobody"}, "HTTP400", "Unknown username"),
    ({"password": "other"}, "HTTP401", "Incorrect password"),
    ({"no_routes_prefixes": ("961",)}, "HTTP400", "NO ROUTES"),
])
async def test_refusal_code_is_the_http_status_and_the_text_its_message(
        fake: tuple[FakeCommpeakState, str], setup: dict[str, Any], code: str, text: str) -> None:
    state, url = fake
    for key, value in setup.items():
        setattr(state, key, value)
    p = provider(url)
    await p.start(None)  # type: ignore[arg-type]
    with pytest.raises(RouteError) as info:
        await p.submit(msg())
    assert (info.value.code, info.value.message) == (code, text)  # the upstream's text is not a code
    assert p.state().last_error == f"{code}: {text}"
    await p.stop()


async def test_gateway_polls_to_final_and_fails_over(module_db_url: str, fake: tuple[FakeCommpeakState, str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state, url = fake
    state.dest_statuses = {"0001": ["ENROUTE", "UNDELIV"]}
    bstate = BulksmsFakeState(password=PASSWORD)
    async with LoopbackServer(bulksms_app(bstate)) as bulk:
        settings = api_settings(
            module_db_url, broker_url="stomp://127.0.0.1:1", webhook_auth="token:x",
            providers=[{"name": "commpeak", "type": "http", "dialect": "commpeak", "url": url, "username": "user",
                        "password": PASSWORD, "poll_interval": 0.2},
                       {"name": "bulk", "type": "http", "dialect": "bulksms", "url": f"{bulk.url}/bulksms",
                        "username": "user", "password": PASSWORD}],
            routes=[{"channel": "http", "providers": ["commpeak", "bulk"]}], default_channel="http",
        )
        async with running_app(settings, start_workers=True) as client:
            ok = (await client.post("/msg-client/send", json={"To": "+14155550100", "Body": "hi", "From": "Acme"})).json()
            bad = (await client.post("/msg-client/send", json={"To": "+14155550001", "Body": "hi", "From": "Acme"})).json()
            m1 = await wait_status(client, ok["MessageSid"], {"delivered"})
            m2 = await wait_status(client, bad["MessageSid"], {"undelivered"})
            assert (m1["Status"], m1["Provider"], m1["ProviderStatusCode"]) == ("delivered", "commpeak", "DELIVRD")
            assert (m2["Status"], m2["ProviderStatusCode"]) == ("undelivered", "UNDELIV")

            state.no_routes_prefixes = ("961",)
            r = (await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "x", "From": "Acme"})).json()
            m3 = await wait_status(client, r["MessageSid"], {"sent", "failed"})
            assert (m3["Status"], m3["Provider"]) == ("sent", "bulk")

            state.down, state.no_routes_prefixes = True, ()
            await asyncio.sleep(0)
            r = (await client.post("/msg-client/send", json={"To": "+96170123457", "Body": "y", "From": "Acme"})).json()
            m4 = await wait_status(client, r["MessageSid"], {"sent", "failed"})
            assert (m4["Status"], m4["Provider"]) == ("sent", "bulk")  # commpeak down: failed over
    assert PASSWORD not in caplog.text


async def test_fake_answers_byte_for_byte_as_the_seed_samples(fake: tuple[FakeCommpeakState, str]) -> None:
    state, url = fake
    creds = {"username": "user", "password": PASSWORD}
    async with httpx.AsyncClient() as client:
        ok = await client.get(url, params={**creds, "ani": "Acme", "dnis": "96170123456", "message": "hi",
                                           "command": "submit", "serviceType": "", "longMessageMode": "split"})
        mid = ok.json()["message_id"]
        status = await client.get(url, params={**creds, "messageId": mid, "command": "query"})
        unknown = await client.get(url, params={**creds, "messageId": "alss-some-message-id", "command": "query"})
        user = await client.get(url, params={"username": "x", "password": PASSWORD, "command": "query"})
        password = await client.post(url, data={"username": "user", "password": "x", "command": "submit"})
    for r in (ok, status, unknown, user, password):
        assert r.headers["content-type"] == "text/html; charset=UTF-8"
    assert ok.status_code == 200 and ok.content == b'{"message_id":"' + mid.encode() + b'"}'
    assert status.content == b'{"status":"ENROUTE"}'
    assert unknown.content == b'{"status":"message ID alss-some-message-id not found"}'
    assert (user.status_code, user.content) == (400, b"Unknown username")
    assert (password.status_code, password.content) == (401, b"Incorrect password")
