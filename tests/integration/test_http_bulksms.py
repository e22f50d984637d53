"""The seed-001 bulk HTTP dialect against its loopback fake on a real HTTP server."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, fields

import httpx
import pytest
from conftest import api_settings, running_app
from fakes.bulksms import BulksmsFakeState, create_app
from fakes.server import LoopbackServer
from pydantic import SecretStr
from support.gateway import wait_status

from app.config import HttpProviderConfig
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid
from app.providers.base import (
    InboundSms,
    OutboundMessage,
    PermanentError,
    ProviderError,
    Receipt,
    RetryableError,
    RouteError,
    SubmitResult,
    UnknownOutcomeError,
)
from app.providers.http.bulksms import BulksmsProvider, ReplyItem, assign_reply, parse_reply

PASSWORD = "Pw-7c1e9b3a-bulk"


class NullSink:
    async def receipts(self, receipts: Sequence[Receipt]) -> None:
        pass

    async def inbound(self, message: InboundSms) -> None:
        pass


@dataclass
class Env:
    state: BulksmsFakeState
    server: LoopbackServer
    provider: BulksmsProvider

    @property
    def endpoint(self) -> str:
        return self.server.url + "/bulksms/bulksms"


def make_provider(url: str, *, password: str = PASSWORD, timeout: float = 2.0,
                  default_from: str | None = "Acme") -> BulksmsProvider:
    cfg = HttpProviderConfig(
        name="bulk", dialect="bulksms", url=url, username="user", password=SecretStr(password),
        timeout=timeout, default_from=default_from,
    )
    return BulksmsProvider(cfg)


def msg(to: str = "+96170123456", body: str = "Hello", *, encoding: Encoding = Encoding.GSM7,
        flash: bool = False, mode: LongMessageMode = LongMessageMode.SPLIT,
        sender: str | None = None) -> OutboundMessage:
    return OutboundMessage(sid=MessageSid("SM" + to.lstrip("+")), to=to, sender=sender, body=body,
                           encoding=encoding, long_message_mode=mode, flash=flash)


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[tuple[BulksmsFakeState, LoopbackServer]]:
    state = BulksmsFakeState(password=PASSWORD)
    server = LoopbackServer(create_app(state))
    await server.start()
    yield state, server
    await server.stop()


@pytest.fixture
async def env(served: tuple[BulksmsFakeState, LoopbackServer]) -> AsyncIterator[Env]:
    state, server = served
    fresh = BulksmsFakeState(password=PASSWORD)
    for f in fields(BulksmsFakeState):  # one server for the module, a clean script per test
        setattr(state, f.name, getattr(fresh, f.name))
    provider = make_provider(server.url + "/bulksms/bulksms")
    await provider.start(NullSink())
    try:
        yield Env(state, server, provider)
    finally:
        await provider.stop()



async def test_single_message_is_accepted_with_the_upstream_message_id(env: Env) -> None:
    result = await env.provider.submit(msg())
    assert result.provider_status_code == "1701"
    (upstream_id,) = result.upstream_ids
    assert env.state.accepted[upstream_id]["destination"] == "96170123456"
    assert env.state.requests == [{
        "username": "user", "password": PASSWORD, "type": "0", "dlr": "1", "destination": "96170123456",
        "source": "Acme", "message": "Hello",
    }]
    assert env.provider.state().submitted == 1
    assert await env.provider.query_status(upstream_id) is None


async def test_fake_answers_plain_text_like_a_php_server(env: Env) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(env.endpoint, params={
            "username": "user", "password": PASSWORD, "type": "0", "dlr": "1",
            "destination": "96170123456,96171000000", "source": "Acme", "message": "hi",
        })
        missing = await client.get(env.endpoint, params={"username": "user"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert re.fullmatch(rf"1701\|96170123456\|{uuid},1701\|96171000000\|{uuid}", response.text)
    assert missing.text == "1702||"


async def test_query_is_utf8_percent_encoded_with_comma_and_plus_escaped(env: Env) -> None:
    results = await env.provider.submit_many([
        msg("+96170123456", "a+b & c é", sender="+96170000001"),
        msg("+96171123456", "a+b & c é", sender="+96170000001"),
    ])
    assert all(isinstance(r, SubmitResult) for r in results)
    (raw,) = env.state.raw_queries
    assert b"destination=96170123456%2C96171123456" in raw
    assert b"source=%2B96170000001" in raw
    assert b"message=a%2Bb%20%26%20c%20%C3%A9" in raw
    assert env.state.requests[0]["message"] == "a+b & c é"


@pytest.mark.parametrize(
    ("encoding", "flash", "body", "expected_type"),
    [
        (Encoding.GSM7, False, "Hello {world} €5", "0"),
        (Encoding.GSM7, True, "Flash!", "1"),
        (Encoding.UCS2, False, "مرحبا 👋", "2"),
        (Encoding.LATIN1, False, "Þórr ½ «ok»", "5"),
        (Encoding.UCS2, True, "Привет", "6"),
        (Encoding.LATIN1, True, "Þórr ½", "7"),
    ],
)
async def test_type_follows_encoding_and_flash(
    env: Env, encoding: Encoding, flash: bool, body: str, expected_type: str
) -> None:
    result = await env.provider.submit(msg(body=body, encoding=encoding, flash=flash))
    sent = env.state.accepted[result.upstream_ids[0]]
    assert (sent["type"], sent["message"]) == (expected_type, body)


async def test_text_outside_the_types_charset_fails_with_1705(env: Env) -> None:
    with pytest.raises(PermanentError) as info:
        await env.provider.submit(msg(body="مرحبا", encoding=Encoding.GSM7))
    assert info.value.code == "1705" and not isinstance(info.value, RouteError)


async def test_long_text_is_sent_whole_for_the_upstream_to_concatenate(env: Env) -> None:
    body = "0123456789" * 50
    result = await env.provider.submit(msg(body=body))
    assert env.state.accepted[result.upstream_ids[0]]["message"] == body
    assert len(result.upstream_ids) == 1


@pytest.mark.parametrize(("encoding", "char", "limit"), [(Encoding.GSM7, "a", 160), (Encoding.UCS2, "ж", 70),
                                                         (Encoding.GSM7, "€", 80)])
async def test_cut_mode_truncates_to_one_segment(env: Env, encoding: Encoding, char: str, limit: int) -> None:
    result = await env.provider.submit(msg(body=char * 400, encoding=encoding, mode=LongMessageMode.CUT))
    assert env.state.accepted[result.upstream_ids[0]]["message"] == char * limit


async def test_cut_of_text_outside_its_encoding_fails_without_a_request(env: Env) -> None:
    with pytest.raises(PermanentError) as info:
        await env.provider.submit(msg(body="مرحبا" * 50, encoding=Encoding.GSM7, mode=LongMessageMode.CUT))
    assert info.value.code == "ENCODING" and env.state.requests == []


@pytest.mark.parametrize("separator", [",", "\n", "\r\n"])
async def test_one_request_for_many_destinations_maps_replies_back(env: Env, separator: str) -> None:
    env.state.separator = separator
    env.state.forced["96170000003"] = "1706"
    env.state.forced["96170000004"] = "1715"
    messages = [msg(f"+9617000000{i}", "Same text") for i in range(6)]
    results = await env.provider.submit_many(messages)
    assert len(env.state.requests) == 1
    assert env.state.requests[0]["destination"] == ",".join(f"9617000000{i}" for i in range(6))
    for i, result in enumerate(results):
        if i == 3:
            assert isinstance(result, PermanentError) and result.code == "1706"
        elif i == 4:
            assert type(result) is PermanentError and result.code == "1715"
        else:
            assert isinstance(result, SubmitResult)
            assert env.state.accepted[result.upstream_ids[0]]["destination"] == f"9617000000{i}"


async def test_requests_are_grouped_by_text_sender_and_type(env: Env) -> None:
    messages = [
        msg("+96170000001", "A"), msg("+96170000002", "A"), msg("+96170000003", "B"),
        msg("+96170000004", "A", sender="Other"), msg("+96170000005", "A", flash=True),
        msg("+96170000001", "A"),  # same destination again: needs its own request
    ]
    results = await env.provider.submit_many(messages)
    assert all(isinstance(r, SubmitResult) for r in results)
    assert sorted(r["destination"] for r in env.state.requests) == sorted([
        "96170000001,96170000002", "96170000003", "96170000004", "96170000005", "96170000001",
    ])
    ids = [r.upstream_ids[0] for r in results if isinstance(r, SubmitResult)]
    assert len(set(ids)) == len(messages)


async def test_destinations_are_capped_per_request(env: Env) -> None:
    messages = [msg(f"+9617{i:07d}", "bulk") for i in range(250)]
    results = await env.provider.submit_many(messages)
    assert all(isinstance(r, SubmitResult) for r in results)
    assert sorted(len(r["destination"].split(",")) for r in env.state.requests) == [50, 100, 100]


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("1709", RetryableError),
        ("1703", RouteError),
        ("1725", RouteError),
        ("16", RouteError),
        ("18", RouteError),
        ("1702", PermanentError),
        ("1704", PermanentError),
        ("1710", PermanentError),
        ("1732", PermanentError),
        ("1028", PermanentError),
        ("1041", PermanentError),
        ("1042", PermanentError),
        ("1033", PermanentError),
        ("69", PermanentError),
        ("8", PermanentError),
        ("88", PermanentError),  # an SMPP error code passed through
    ],
)
@pytest.mark.parametrize("bare", [False, True])
async def test_request_level_codes(env: Env, code: str, error_class: type[ProviderError], bare: bool) -> None:
    env.state.request_error = code
    env.state.bare_errors = bare
    results = await env.provider.submit_many([msg("+96170000001", "x"), msg("+96170000002", "x")])
    for result in results:
        assert type(result) is error_class
        assert isinstance(result, ProviderError) and result.code == code
    assert len(env.state.requests) == 1  # the provider itself never retries


async def test_1715_fails_with_its_code_and_is_never_resubmitted(env: Env) -> None:
    env.state.forced["96170123456"] = "1715"
    with pytest.raises(PermanentError) as info:
        await env.provider.submit(msg())
    assert info.value.code == "1715" and not isinstance(info.value, RouteError)  # no failover either
    assert len(env.state.requests) == 1


async def test_wrong_password_is_a_route_error(env: Env) -> None:
    bad = make_provider(env.endpoint, password="wrong-one")
    await bad.start(NullSink())
    try:
        with pytest.raises(RouteError) as info:
            await bad.submit(msg())
    finally:
        await bad.stop()
    assert info.value.code == "1703"


async def test_invalid_destination_and_source(env: Env) -> None:
    with pytest.raises(PermanentError) as dest:
        await env.provider.submit(msg("+12"))
    with pytest.raises(PermanentError) as src:
        await env.provider.submit(msg(sender="WayTooLongSender"))
    assert (dest.value.code, src.value.code) == ("1706", "1707")


async def test_no_sender_anywhere_fails_over_without_a_request(env: Env) -> None:
    provider = make_provider(env.endpoint, default_from=None)
    await provider.start(NullSink())
    try:
        with pytest.raises(RouteError) as info:
            await provider.submit(msg())
    finally:
        await provider.stop()
    assert info.value.code == "NO_SOURCE" and env.state.requests == []


async def test_read_timeout_is_an_unknown_outcome(env: Env) -> None:
    env.state.delay = 1.0
    slow = make_provider(env.endpoint, timeout=0.2)
    await slow.start(NullSink())
    try:
        with pytest.raises(UnknownOutcomeError) as info:
            await slow.submit(msg())
    finally:
        await slow.stop()
    assert info.value.code == "TIMEOUT"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_retryable() -> None:
    provider = make_provider(f"http://127.0.0.1:{_closed_port()}/bulksms/bulksms")
    await provider.start(NullSink())
    try:
        with pytest.raises(RetryableError) as info:
            await provider.submit(msg())
    finally:
        await provider.stop()
    assert info.value.code == "CONNECT"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(503, RetryableError), (500, RetryableError), (429, RetryableError), (504, UnknownOutcomeError),
     (404, RouteError), (401, RouteError)],
)
async def test_http_statuses(env: Env, status: int, error_class: type[ProviderError]) -> None:
    env.state.status_override = status
    with pytest.raises(ProviderError) as info:
        await env.provider.submit(msg())
    assert type(info.value) is error_class and info.value.code == f"HTTP{status}"


async def test_down_switch_answers_503(env: Env) -> None:
    env.state.down = True
    with pytest.raises(RetryableError):
        await env.provider.submit(msg())
    env.state.down = False
    assert isinstance(await env.provider.submit(msg()), SubmitResult)


async def test_not_started_is_not_available() -> None:
    provider = make_provider("http://127.0.0.1:9/bulksms")
    assert not provider.is_available()
    with pytest.raises(RetryableError):
        await provider.submit(msg())


def test_parse_reply_forms() -> None:
    assert parse_reply("1701|96170|id-1") == [ReplyItem("1701", "96170", "id-1")]
    assert parse_reply("\ufeff1701|1|a, 1706|2|\r\n1703\n") == [
        ReplyItem("1701", "1", "a"), ReplyItem("1706", "2", None), ReplyItem("1703", None, None),
    ]
    for garbage in ("", "<html>oops</html>", "OK|1|2", "1701|1|2|3"):
        with pytest.raises(ValueError):
            parse_reply(garbage)


def test_assign_reply_matches_rewritten_numbers_and_flags_missing_ones() -> None:
    items = [ReplyItem("1701", "0096170000002", "b"), ReplyItem("1701", "70000001", "a")]
    results = assign_reply(items, ["96170000001", "96170000002", "96170000003"])
    assert [r.upstream_ids for r in results if isinstance(r, SubmitResult)] == [("a",), ("b",)]
    assert isinstance(results[2], UnknownOutcomeError) and results[2].code == "NO_REPLY"
    # Unrecognisable numbers, but one item per destination: taken in request order.
    in_order = assign_reply([ReplyItem("1701", "x", "1"), ReplyItem("1706", "y", None)], ["111", "222"])
    assert isinstance(in_order[0], SubmitResult) and isinstance(in_order[1], PermanentError)


async def test_unreadable_reply_is_an_unknown_outcome(env: Env) -> None:
    garbage_server = LoopbackServer(_static_app("<html><body>Database error</body></html>"))
    await garbage_server.start()
    provider = make_provider(garbage_server.url + "/bulksms/bulksms")
    await provider.start(NullSink())
    try:
        with pytest.raises(UnknownOutcomeError) as info:
            await provider.submit(msg())
    finally:
        await provider.stop()
        await garbage_server.stop()
    assert info.value.code == "BAD_REPLY"


def _static_app(body: str) -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        return Response(body, headers={"content-type": "text/html; charset=UTF-8"})

    return Starlette(routes=[Route("/bulksms/bulksms", endpoint)])


async def test_password_never_reaches_logs_or_errors(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "app"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    errors: list[str] = []
    await env.provider.submit(msg())
    for code in ("1703", "1709", "1706"):
        env.state.request_error = code
        with pytest.raises(ProviderError) as info:
            await env.provider.submit(msg())
        errors.append(repr(info.value))
    env.state.request_error = None
    env.state.delay = 1.0
    slow = make_provider(env.endpoint, timeout=0.2)
    await slow.start(NullSink())
    with pytest.raises(UnknownOutcomeError) as timeout:
        await slow.submit(msg())
    await slow.stop()
    errors.append(repr(timeout.value))
    refused = make_provider(f"http://127.0.0.1:{_closed_port()}/bulksms/bulksms")
    await refused.start(NullSink())
    with pytest.raises(RetryableError) as conn:
        await refused.submit(msg())
    await refused.stop()
    errors.append(repr(conn.value))

    assert "HTTP request: GET" in caplog.text  # the transport did log the request line...
    assert "password=***" in caplog.text  # ...with the password redacted
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    assert all(PASSWORD not in e for e in errors)
    assert PASSWORD not in repr(env.provider.state())


async def test_through_the_gateway_1715_fails_with_code_1715_and_reports_arrive_on_the_webhook(
        module_db_url: str, env: Env) -> None:
    settings = api_settings(
        module_db_url, broker_url="stomp://127.0.0.1:1", webhook_auth="token:hook",
        providers=[{"name": "bulk", "type": "http", "dialect": "bulksms", "url": env.endpoint,
                    "username": "user", "password": PASSWORD, "default_from": "Acme"}],
        routes=[{"channel": "bulk", "providers": ["bulk"]}], default_channel="bulk")
    env.state.forced["96170000715"] = "1715"
    async with running_app(settings, start_workers=True) as client:
        timeout = (await client.post("/msg-client/send", json={"To": "+96170000715", "Body": "x"})).json()
        ok = (await client.post("/msg-client/send", json={"To": "+96170000001", "Body": "x"})).json()
        m = await wait_status(client, timeout["MessageSid"], {"failed"})
        assert (m["Status"], m["ProviderStatusCode"]) == ("failed", "1715")
        sent = await wait_status(client, ok["MessageSid"], {"sent"})
        assert sent["Status"] == "sent" and env.state.requests[-1]["dlr"] == "1"
        # The vendor's report, pushed (as agreed with them) to our webhook with its message id.
        (upstream,) = sent["UpstreamIds"]
        r = await client.post("/msg-client/delivery-notification", headers={"X-Webhook-Token": "hook"},
                              data={"MessageSid": upstream, "SmsStatus": "delivered"})
        assert r.status_code == 200, r.text
        m = await wait_status(client, ok["MessageSid"], {"delivered"})
        assert m["Status"] == "delivered"
    assert sum(1 for q in env.state.requests if q["destination"] == "96170000715") == 1  # never resubmitted
