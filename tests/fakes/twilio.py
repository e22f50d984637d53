"""A loopback fake of Twilio's Messages API, answering as Twilio does.

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (basic auth AccountSid:AuthToken, form
  `To`, `From`, `Body`, `StatusCallback`, optional `ValidityPeriod`) → 201 with the Message resource
  (`sid` `SM…`, `status` `queued`); errors as Twilio's JSON `{code, message, more_info, status}`:
  401/20003 bad credentials, 400/21604 no To, 21603 no From, 21602 no Body, 21211 invalid To,
  21617 body over 1600 characters, 404/20404 another account, 503/20503 while `down`.
- `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json` → the resource with its current status.
- After a 201 with a StatusCallback, a background task POSTs Twilio's status callbacks to it: `sent`,
  then `delivered` (or the scripted outcome, with `ErrorCode`), form-encoded and signed with
  `X-Twilio-Signature` made from the auth token. `await state.drain()` waits for them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx

from app.domain.encoding import choose_encoding, count_segments
from app.domain.twilio_signature import compute_signature

from .asgi import Receive, Scope, Send, read_params, respond

API_VERSION = "2010-04-01"
_E164 = re.compile(r"\+?[1-9]\d{6,14}")
_PATH = re.compile(rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/]+))?\.json")
Answer = tuple[int, str, dict[str, str]]


@dataclass(frozen=True)
class FakeError:
    """A scripted Twilio error answer."""

    status: int
    code: int
    message: str
    retry_after: int | None = None


@dataclass
class CallbackRecord:
    url: str
    params: dict[str, str]
    signature: str
    response_status: int | None  # None: the POST itself failed


@dataclass
class TwilioFakeState:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "secret"
    forced: dict[str, FakeError] = field(default_factory=dict)  # To → error answered for it
    outcomes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # To → (final, ErrorCode)
    delay: float = 0.0  # seconds before answering an API request
    callback_delay: float = 0.0  # seconds between status callbacks
    send_callbacks: bool = True
    down: bool = False
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # sid → Message resource
    requests: list[dict[str, str]] = field(default_factory=list)  # every create request's form
    callbacks: list[CallbackRecord] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def drain(self) -> None:
        """Wait until every status callback scheduled so far has been sent."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def _now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def _error(status: int, code: int, message: str, retry_after: int | None = None) -> Answer:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return _json(body, status, headers)


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return status, json.dumps(body), {"Twilio-Request-Id": "RQ" + secrets.token_hex(16), **(headers or {})}


def _authenticated(state: TwilioFakeState, scope: Scope) -> bool:
    header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    ok_user = hmac.compare_digest(user.encode(), state.account_sid.encode())
    return ok_user & hmac.compare_digest(password.encode(), state.auth_token.encode())


def _resource(state: TwilioFakeState, sid: str, form: dict[str, str]) -> dict[str, Any]:
    now = _now()
    uri = f"/{API_VERSION}/Accounts/{state.account_sid}/Messages/{sid}"
    body = form["Body"]
    segments = count_segments(body, choose_encoding(body))
    return {
        "account_sid": state.account_sid, "api_version": API_VERSION, "body": body,
        "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
        "error_code": None, "error_message": None, "from": form["From"], "messaging_service_sid": None,
        "num_media": "0", "num_segments": str(segments), "price": None, "price_unit": "USD", "sid": sid,
        "status": "queued", "subresource_uris": {"media": f"{uri}/Media.json"}, "to": form["To"],
        "uri": f"{uri}.json",
    }


def _validate(form: dict[str, str]) -> FakeError | None:
    to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
    if not to:
        return FakeError(400, 21604, "A 'To' phone number is required.")
    if not sender:
        return FakeError(400, 21603, "A 'From' phone number is required.")
    if not body:
        return FakeError(400, 21602, "Message body is required.")
    if not _E164.fullmatch(to):
        return FakeError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if len(body) > 1600:
        return FakeError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    return None


async def _post_callback(state: TwilioFakeState, client: httpx.AsyncClient, url: str, msg: dict[str, Any],
                         status: str, error_code: str | None) -> None:
    msg["status"] = status
    msg["date_updated"] = _now()
    if status == "sent":
        msg["date_sent"] = msg["date_updated"]
    if error_code:
        msg["error_code"] = int(error_code) if error_code.isdigit() else error_code
    params = {
        "AccountSid": state.account_sid, "ApiVersion": API_VERSION, "From": msg["from"],
        "MessageSid": msg["sid"], "MessageStatus": status, "SmsSid": msg["sid"], "SmsStatus": status,
        "To": msg["to"],
    }
    if error_code:
        params["ErrorCode"] = error_code
    signature = compute_signature(state.auth_token, url, params)
    headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
    try:
        response = await client.post(url, data=params, headers=headers)
        code: int | None = response.status_code
    except httpx.HTTPError:
        code = None
    state.callbacks.append(CallbackRecord(url, params, signature, code))


async def _callbacks(state: TwilioFakeState, url: str, msg: dict[str, Any]) -> None:
    final, error_code = state.outcomes.get(msg["to"], ("delivered", None))
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        for status, err in (("sent", None), (final, error_code)):
            await asyncio.sleep(state.callback_delay)
            await _post_callback(state, client, url, msg, status, err)


def _create(state: TwilioFakeState, form: dict[str, str]) -> Answer:
    state.requests.append(form)
    err = state.forced.get(form.get("To", "")) or _validate(form)
    if err is not None:
        return _error(err.status, err.code, err.message, err.retry_after)
    sid = "SM" + secrets.token_hex(16)
    msg = state.messages[sid] = _resource(state, sid, form)
    callback = form.get("StatusCallback")
    if callback and state.send_callbacks:
        task = asyncio.create_task(_callbacks(state, callback, msg))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    return _json(msg, 201)


async def _answer(state: TwilioFakeState, scope: Scope, receive: Receive) -> Answer:
    path = scope["path"]
    match = _PATH.fullmatch(path)
    create = match is not None and match["sid"] is None and scope["method"] == "POST"
    fetch = match is not None and match["sid"] is not None and scope["method"] == "GET"
    if not (create or fetch):
        return _error(404, 20404, f"The requested resource {path} was not found")
    if state.delay:
        await asyncio.sleep(state.delay)
    if state.down:
        return _error(503, 20503, "Service Unavailable")
    if not _authenticated(state, scope):
        return _error(401, 20003, "Authenticate")
    assert match is not None
    msg = state.messages.get(match["sid"] or "")
    if match["account"] != state.account_sid or (fetch and msg is None):
        return _error(404, 20404, f"The requested resource {path} was not found")
    if fetch:
        assert msg is not None
        return _json(msg)
    return _create(state, await read_params({**scope, "query_string": b""}, receive))


def create_app(state: TwilioFakeState) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status, body, headers = await _answer(state, scope, receive)
        await respond(send, status, body, b"application/json; charset=utf-8", headers)

    return app
