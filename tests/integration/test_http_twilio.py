"""Twilio's Messages API dialect against its loopback fake; signed status callbacks to a loopback receiver."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, fields

import httpx
import pytest
from fakes.server import LoopbackServer
from fakes.twilio import FakeError, TwilioFakeState, create_app
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.config import HttpProviderConfig
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid, UpstreamId
from app.domain.status import Status
from app.domain.twilio_signature import validate_signature
from app.providers.base import (
    InboundSms,
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    Receipt,
    RetryableError,
    RouteError,
    SubmitResult,
    UnknownOutcomeError,
)
from app.providers.http.twilio import TwilioProvider, error_for, retry_after_seconds

ACCOUNT = "AC" + "1f" * 16
TOKEN = "tok-5e0c2d9a8b7f-twilio"
CALLBACK_PATH = "/msg-client/delivery-notification"


class NullSink:
    async def receipts(self, receipts: Sequence[Receipt]) -> None:
        pass

    async def inbound(self, message: InboundSms) -> None:
        pass


@dataclass
class Callback:
    url: str
    form: dict[str, str]
    valid: bool


@dataclass
class Receiver:
    """Our side of the status callbacks: records each POST and checks its signature."""

    token: str
    received: list[Callback] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            url = str(request.url)
            signature = request.headers.get("x-twilio-signature", "")
            self.received.append(Callback(url, form, validate_signature(self.token, url, form, signature)))
            return Response(status_code=200)

        return Starlette(routes=[Route(CALLBACK_PATH, hook, methods=["POST"])])


@dataclass
class Env:
    state: TwilioFakeState
    server: LoopbackServer
    receiver: Receiver
    public_url: str
    provider: TwilioProvider


def make_provider(url: str, public_url: str, *, token: str = TOKEN, timeout: float = 2.0,
                  default_from: str | None = "+15005550006") -> TwilioProvider:
    cfg = HttpProviderConfig(name="twilio", dialect="twilio", url=url, account_sid=ACCOUNT,
                             auth_token=SecretStr(token), timeout=timeout, default_from=default_from)
    return TwilioProvider(cfg, public_url)


def msg(to: str = "+14155550100", body: str = "Hello", *, sender: str | None = None,
        validity: int | None = None, mode: LongMessageMode = LongMessageMode.SPLIT,
        encoding: Encoding = Encoding.GSM7) -> OutboundMessage:
    return OutboundMessage(sid=MessageSid("SM" + "0" * 32), to=to, sender=sender, body=body, encoding=encoding,
                           long_message_mode=mode, validity_period=validity)


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[tuple[TwilioFakeState, LoopbackServer, Receiver, LoopbackServer]]:
    state = TwilioFakeState(account_sid=ACCOUNT, auth_token=TOKEN)
    server = LoopbackServer(create_app(state))
    receiver = Receiver(TOKEN)
    receiver_server = LoopbackServer(receiver.app())
    await server.start()
    await receiver_server.start()
    yield state, server, receiver, receiver_server
    await state.drain()
    await receiver_server.stop()
    await server.stop()


@pytest.fixture
async def env(served: tuple[TwilioFakeState, LoopbackServer, Receiver, LoopbackServer]) -> AsyncIterator[Env]:
    state, server, receiver, receiver_server = served
    await state.drain()
    fresh = TwilioFakeState(account_sid=ACCOUNT, auth_token=TOKEN)
    for f in fields(TwilioFakeState):  # one server for the module, a clean script per test
        setattr(state, f.name, getattr(fresh, f.name))
    receiver.received.clear()
    provider = make_provider(server.url, receiver_server.url)
    await provider.start(NullSink())
    try:
        yield Env(state, server, receiver, receiver_server.url, provider)
    finally:
        await provider.stop()


def test_provider_satisfies_the_protocol() -> None:
    provider: Provider = make_provider("http://127.0.0.1:9", "http://127.0.0.1:8080")
    assert provider.type == "http"


async def test_201_gives_the_sid_and_the_form_is_twilios(env: Env) -> None:
    result = await env.provider.submit(msg())
    (sid,) = result.upstream_ids
    assert sid.startswith("SM") and len(sid) == 34
    assert result.provider_status_code == "queued"
    assert env.state.requests == [{
        "To": "+14155550100", "From": "+15005550006", "Body": "Hello",
        "StatusCallback": env.public_url + CALLBACK_PATH,
    }]
    assert env.state.messages[sid]["to"] == "+14155550100"


async def test_fake_answers_201_json_like_twilio(env: Env) -> None:
    async with httpx.AsyncClient(auth=(ACCOUNT, TOKEN)) as client:
        response = await client.post(f"{env.server.url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
                                     data={"To": "+14155550100", "From": "+15005550006", "Body": "hi"})
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "queued" and body["direction"] == "outbound-api"
    assert body["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{body['sid']}.json"
    assert {"account_sid", "date_created", "error_code", "num_segments", "price"} <= body.keys()


async def test_status_callbacks_arrive_signed_sent_then_delivered(env: Env) -> None:
    result = await env.provider.submit(msg())
    await env.state.drain()
    sid = result.upstream_ids[0]
    assert [c.form["MessageStatus"] for c in env.receiver.received] == ["sent", "delivered"]
    for c in env.receiver.received:
        assert c.valid
        assert c.url == env.public_url + CALLBACK_PATH
        assert c.form["MessageSid"] == c.form["SmsSid"] == sid
        assert c.form["SmsStatus"] == c.form["MessageStatus"]
        assert (c.form["AccountSid"], c.form["To"], c.form["From"]) == (ACCOUNT, "+14155550100", "+15005550006")
        assert "ErrorCode" not in c.form
        tampered = {**c.form, "MessageStatus": "failed"}
        assert not validate_signature(TOKEN, c.url, tampered, env.state.callbacks[0].signature)
    assert all(r.response_status == 200 for r in env.state.callbacks)


@pytest.mark.parametrize(("outcome", "error_code"), [("undelivered", "30003"), ("failed", "30007")])
async def test_scripted_outcome_carries_the_error_code(env: Env, outcome: str, error_code: str) -> None:
    env.state.outcomes["+14155550100"] = (outcome, error_code)
    result = await env.provider.submit(msg())
    await env.state.drain()
    final = env.receiver.received[-1]
    assert final.valid and final.form["MessageStatus"] == outcome and final.form["ErrorCode"] == error_code
    receipt = await env.provider.query_status(result.upstream_ids[0])
    assert receipt is not None
    assert receipt.status == Status(outcome)
    assert (receipt.provider_status_code, receipt.error_code) == (error_code, error_code)


async def test_query_status_is_none_until_final_then_a_receipt(env: Env) -> None:
    env.state.send_callbacks = False
    result = await env.provider.submit(msg())
    sid = result.upstream_ids[0]
    assert await env.provider.query_status(sid) is None  # queued
    env.state.messages[sid]["status"] = "sent"
    assert await env.provider.query_status(sid) is None
    env.state.messages[sid]["status"] = "delivered"
    receipt = await env.provider.query_status(sid)
    assert receipt == Receipt(provider="twilio", upstream_id=sid, status=Status.DELIVERED,
                              provider_status_code="delivered", source="poll:twilio", error_code=None)
    assert await env.provider.query_status(UpstreamId("SM" + "f" * 32)) is None


async def test_validity_period_is_sent_clamped(env: Env) -> None:
    await env.provider.submit(msg(validity=3600))
    await env.provider.submit(msg(validity=10**6))
    assert [r["ValidityPeriod"] for r in env.state.requests] == ["3600", "36000"]


async def test_cut_mode_sends_one_segment(env: Env) -> None:
    await env.provider.submit(msg(body="ж" * 100, encoding=Encoding.UCS2, mode=LongMessageMode.CUT))
    assert env.state.requests[0]["Body"] == "ж" * 70


@pytest.mark.parametrize(
    ("error", "error_class"),
    [
        (FakeError(400, 21211, "Invalid 'To' Phone Number"), PermanentError),
        (FakeError(400, 21610, "Attempt to send to unsubscribed recipient"), PermanentError),
        (FakeError(400, 21614, "'To' number is not a valid mobile number"), PermanentError),
        (FakeError(400, 21612, "The 'To' phone number is not currently reachable via SMS"), PermanentError),
        (FakeError(400, 21408, "Permission to send an SMS has not been enabled for the region"), RouteError),
        (FakeError(400, 21606, "The 'From' phone number provided is not a valid message-capable number"),
         RouteError),
        (FakeError(429, 20429, "Too Many Requests", retry_after=7), RetryableError),
        (FakeError(400, 21611, "This 'From' number has exceeded the maximum number of queued messages"),
         RetryableError),
        (FakeError(500, 20500, "Internal Server Error"), RetryableError),
        (FakeError(504, 20504, "Gateway Timeout"), UnknownOutcomeError),
    ],
)
async def test_error_json_mapping(env: Env, error: FakeError, error_class: type[ProviderError]) -> None:
    env.state.forced["+14155550100"] = error
    with pytest.raises(ProviderError) as info:
        await env.provider.submit(msg())
    assert type(info.value) is error_class
    assert info.value.code == str(error.code) and info.value.message == error.message
    if error.retry_after is not None:
        assert isinstance(info.value, RetryableError) and info.value.retry_after == error.retry_after
    assert env.provider.state().errors == 1


async def test_fakes_own_validation_errors(env: Env) -> None:
    with pytest.raises(PermanentError) as bad_to:
        await env.provider.submit(msg(to="+12"))
    with pytest.raises(PermanentError) as too_long:
        await env.provider.submit(msg(body="x" * 1601))
    assert (bad_to.value.code, too_long.value.code) == ("21211", "21617")


async def test_wrong_auth_token_is_a_route_error_20003(env: Env) -> None:
    bad = make_provider(env.server.url, env.public_url, token="not-the-token")
    await bad.start(NullSink())
    try:
        with pytest.raises(RouteError) as info:
            await bad.submit(msg())
    finally:
        await bad.stop()
    assert info.value.code == "20003"
    async with httpx.AsyncClient() as client:
        raw = await client.post(f"{env.server.url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json", data={})
    assert raw.status_code == 401 and raw.headers["www-authenticate"].startswith("Basic")
    assert raw.json() == {"code": 20003, "message": "Authenticate",
                          "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}


async def test_down_is_retryable(env: Env) -> None:
    env.state.down = True
    with pytest.raises(RetryableError) as info:
        await env.provider.submit(msg())
    assert info.value.code == "20503"


async def test_read_timeout_is_an_unknown_outcome(env: Env) -> None:
    env.state.delay = 1.0
    slow = make_provider(env.server.url, env.public_url, timeout=0.2)
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
    provider = make_provider(f"http://127.0.0.1:{_closed_port()}", "http://127.0.0.1:8080")
    await provider.start(NullSink())
    try:
        with pytest.raises(RetryableError) as info:
            await provider.submit(msg())
    finally:
        await provider.stop()
    assert info.value.code == "CONNECT"


async def test_no_sender_fails_over_without_a_request(env: Env) -> None:
    provider = make_provider(env.server.url, env.public_url, default_from=None)
    await provider.start(NullSink())
    try:
        with pytest.raises(RouteError) as info:
            await provider.submit(msg())
    finally:
        await provider.stop()
    assert info.value.code == "NO_SOURCE" and env.state.requests == []


def test_error_for_without_json_and_retry_after_forms() -> None:
    assert type(error_for(401, None)) is RouteError
    assert type(error_for(404, "<html/>")) is RouteError
    assert type(error_for(400, {"code": "21211", "message": "x"})) is PermanentError
    assert error_for(503, None).code == "HTTP503"
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


async def test_auth_token_never_reaches_logs_or_errors(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "app"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    basic = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    errors: list[str] = []
    result = await env.provider.submit(msg())
    await env.state.drain()
    await env.provider.query_status(result.upstream_ids[0])
    env.state.forced["+14155550100"] = FakeError(400, 21211, "Invalid 'To' Phone Number")
    with pytest.raises(PermanentError) as permanent:
        await env.provider.submit(msg())
    errors.append(repr(permanent.value))
    env.state.forced.clear()
    bad = make_provider(env.server.url, env.public_url, token=TOKEN + "-old")
    await bad.start(NullSink())
    with pytest.raises(RouteError) as auth:
        await bad.submit(msg())
    await bad.stop()
    errors.append(repr(auth.value))
    env.state.delay = 1.0
    slow = make_provider(env.server.url, env.public_url, timeout=0.2)
    await slow.start(NullSink())
    with pytest.raises(UnknownOutcomeError) as timeout:
        await slow.submit(msg())
    await slow.stop()
    errors.append(repr(timeout.value))

    assert "HTTP Request: POST" in caplog.text
    for secret in (TOKEN, basic):
        assert secret not in caplog.text
        assert all(secret not in r.getMessage() for r in caplog.records)
        assert all(secret not in e for e in errors)
        assert secret not in repr(env.provider.state())


async def test_submit_result_type(env: Env) -> None:
    assert isinstance(await env.provider.submit(msg(sender="+15005550001")), SubmitResult)
    assert env.state.requests[0]["From"] == "+15005550001"
