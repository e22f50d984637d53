"""Bad input on every public endpoint (issue #7), on real PostgreSQL with workers off.

Whatever arrives, the answer is the contract's (§2): a 4xx in the shape
`{"error": {"code", "message", "field"}}` with the contract's status (400 invalid, 401 auth, 403 webhook
credentials refused, 404 unknown, 413 too large), or the input stored and given back verbatim; never a
500, never a stack trace, never a statement executed from a string.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import API_KEY, WEBHOOK_TOKEN, api_settings, running_app
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import IdempotencyRecord, InboundMessage, KeptReceipt, Message, MessagePart, OutboxEvent
from app.domain.ids import normalise_upstream_id

SEND = "/msg-client/send"
RECEIVE = "/msg-client/receive"
STATUS = "/msg-client/delivery-notification"
TOKEN = {"X-Webhook-Token": WEBHOOK_TOKEN}
FORM = "application/x-www-form-urlencoded"

# Text a client or an upstream may send on purpose or by accident. Each is stored and answered verbatim.
HOSTILE = {
    "sql": "'); DROP TABLE message;--",
    "sql_or": "' OR '1'='1' --",
    "html": "<script>alert(1)</script>",
    "html_attr": '"><img src=x onerror=alert(1)>',
    "rtl_override": "\u202egnp.exe\u202c",
    "emoji": "😀👍🏽🇱🇧",
    "zero_width": "a\u200bb\ufeffc",
    "format": "%s%n{0}${jndi:x}",
    "crlf": "line1\r\nX-Injected: 1",
    "quotes": 'back\\slash "double" `tick`',
}
# Text PostgreSQL cannot store: refused with a 400 naming the field.
UNSTORABLE = {"nul": "a\x00b", "lone_surrogate": "\ud800"}


def assert_error(r: httpx.Response, status: int, field: str | None = None, code: str | None = None,
                 any_field: bool = False) -> dict[str, Any]:
    """`r` is `status` with exactly the contract's error body."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert set(err) == {"code", "message", "field"}, err
    assert isinstance(err["code"], str) and err["code"], err
    assert isinstance(err["message"], str) and err["message"], err
    assert "Traceback" not in r.text and "sqlalchemy" not in r.text.lower(), r.text
    if not any_field:
        assert err["field"] == field, err
    if code is not None:
        assert err["code"] == code, err
    return err


def as_json(payload: object) -> bytes:
    """JSON with every non-ASCII character escaped, so a lone surrogate can be sent (`"\\ud800"`)."""
    return json.dumps(payload).encode()


async def count(sessions: async_sessionmaker[AsyncSession], table: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
async def anon(api: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The same app with no credentials at all."""
    transport = httpx.ASGITransport(app=api.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def max_body(api: httpx.AsyncClient) -> int:
    return int(api.app.state.ctx.settings.max_body_bytes)  # type: ignore[attr-defined]


# --- size and shape of the body -------------------------------------------------------------------

async def _chunks(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked): the limit must hold while it is read."""
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(("path", "content_type"), [(SEND, "application/json"), (SEND, "text/plain"),
                                                    (RECEIVE, FORM), (STATUS, FORM),
                                                    (RECEIVE, "multipart/form-data; boundary=x")])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_body_is_413_in_the_error_shape(api: httpx.AsyncClient, path: str, content_type: str,
                                                         chunked: bool) -> None:
    size = max_body(api) + 1
    content: bytes | AsyncIterator[bytes] = _chunks(size) if chunked else b"x" * size
    r = await api.post(path, content=content, headers={"content-type": content_type, **TOKEN})
    assert_error(r, 413, code="payload_too_large")


async def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(api: httpx.AsyncClient) -> None:
    r = await api.post(SEND, content=b"{}", headers={"content-type": "application/json",
                                                     "content-length": str(max_body(api) * 1000)})
    assert_error(r, 413, code="payload_too_large")


@pytest.mark.parametrize("document", [
    b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"To": "+14155550100", "Body": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
], ids=["arrays", "objects", "inside-Body"])
async def test_json_nested_ten_thousand_deep_is_400_not_a_recursion_error(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], document: bytes) -> None:
    before = await count(sessions, Message)
    r = await api.post(SEND, content=document, headers={"content-type": "application/json"})
    assert_error(r, 400)
    assert await count(sessions, Message) == before


async def test_json_nested_within_the_parser_limit_is_400_naming_the_field(api: httpx.AsyncClient) -> None:
    body = b'{"To": "+14155550100", "Body": ' + b"[" * 500 + b"]" * 500 + b"}"
    r = await api.post(SEND, content=body, headers={"content-type": "application/json"})
    assert_error(r, 400, "Body")


@pytest.mark.parametrize(("document", "field"), [
    (b'{"To": "+14155550100", "Body": "\xff\xfe"}', None),      # bytes no UTF-8 text has
    (b'{"To": "+14155550100", "Body": "\xc3\x28"}', None),      # a broken two-byte sequence
    (b'{"To": "+14155550100", "Body": "\xc0\xaf"}', None),      # an overlong `/`
    (b'{"To": "+14155550100", "Body": "caf\xe9"}', None),       # Latin-1, not UTF-8
    # json.loads lets a UTF-8-encoded surrogate through ("surrogatepass"); the field check stops it.
    (b'{"To": "+14155550100", "Body": "\xed\xa0\x80"}', "Body"),
], ids=["ff-fe", "broken-pair", "overlong", "latin1", "encoded-surrogate"])
async def test_invalid_utf8_in_a_json_body_is_400(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
                                                  document: bytes, field: str | None) -> None:
    before = await count(sessions, Message)
    r = await api.post(SEND, content=document, headers={"content-type": "application/json"})
    assert_error(r, 400, field)
    assert await count(sessions, Message) == before


@pytest.mark.parametrize("document", [b"{not json", b'{"To": "+14155550100", "Body": "x"', b"\x00", b"[1,2]", b'"x"'])
async def test_malformed_json_is_400_without_a_field(api: httpx.AsyncClient, document: bytes) -> None:
    r = await api.post(SEND, content=document, headers={"content-type": "application/json"})
    assert_error(r, 400, None, code="invalid_body")  # not `"field": "1"`, the offset of the error


async def test_invalid_utf8_in_a_webhook_form_is_kept_with_replacement_characters(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Upstreams percent-encode; a broken sequence becomes U+FFFD rather than losing the inbound SMS."""
    sms_sid = "SM" + secrets.token_hex(16)
    form = f"Body=ok%FF%FEok&From=%2B96170999888&To=%2B96170000001&SmsSid={sms_sid}".encode()
    r = await api.post(RECEIVE, content=form, headers={"content-type": FORM, **TOKEN})
    assert r.status_code == 200, r.text
    async with sessions() as s:
        body = await s.scalar(select(InboundMessage.body).where(InboundMessage.upstream_sid == sms_sid))
    assert body == "ok\ufffd\ufffdok"


# --- fields ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "field"), [
    ({"To": "+1415abc0100"}, "To"),
    ({"To": "1-800-FLOWERS"}, "To"),
    ({"To": "+1415555O100"}, "To"),                       # a letter O among the digits
    ({"To": ["+14155550100", "+1415555abcd"]}, "To[1]"),
    ({"To": "+14155550100, +1415555abcd"}, "To[1]"),
    ({"To": "+14155550100", "From": "+1415abc"}, "From"),
], ids=["letters", "vanity", "letter-O", "list", "comma-string", "From"])
async def test_phone_numbers_with_letters_are_400_naming_the_field(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], payload: dict[str, Any],
        field: str) -> None:
    before = await count(sessions, Message)
    r = await api.post(SEND, json={"Body": "x", **payload})
    assert_error(r, 400, field, code="invalid_field")
    assert await count(sessions, Message) == before


@pytest.mark.parametrize("as_string", [False, True], ids=["list", "comma-string"])
async def test_ten_thousand_and_one_recipients_are_400_and_write_nothing(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], as_string: bool) -> None:
    numbers = [f"+1415{7000000 + i:07d}" for i in range(10_001)]
    to: str | list[str] = ",".join(numbers) if as_string else numbers
    key = "bulk-" + secrets.token_hex(8)
    before = (await count(sessions, Message), await count(sessions, IdempotencyRecord))
    r = await api.post(SEND, json={"To": to, "Body": "too many"}, headers={"Idempotency-Key": key})
    assert_error(r, 400, "To")
    assert (await count(sessions, Message), await count(sessions, IdempotencyRecord)) == before
    # The refused request did not claim its Idempotency-Key either.
    r = await api.post(SEND, json={"To": numbers[:2], "Body": "fewer"}, headers={"Idempotency-Key": key})
    assert r.status_code == 200, r.text


async def _stored(api: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    r = await api.get(f"/msg-client/messages/{sid}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    return dict(r.json())


@pytest.mark.parametrize("field", ["Body", "From", "To", "channel", "SendAt", "Encoding", "LongMessageMode"])
async def test_hostile_text_in_a_send_field_is_stored_verbatim_or_refused_naming_it(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], field: str) -> None:
    refused: set[str] = set()
    for name, value in {**HOSTILE, **UNSTORABLE}.items():
        before = await count(sessions, Message)
        payload = {"To": "+14155550140", "Body": "x", field: value}
        r = await api.post(SEND, content=as_json(payload), headers={"content-type": "application/json"})
        if r.status_code == 200:
            assert field in ("Body", "From"), (name, r.text)  # the others are numbers, names or words
            assert (await _stored(api, r.json()["MessageSid"]))[field] == value, name
        else:
            assert_error(r, 400, field)
            assert await count(sessions, Message) == before, name
            refused.add(name)
    if field == "Body":  # any Unicode, except what PostgreSQL cannot store
        assert refused == set(UNSTORABLE)


async def test_hostile_status_callback_is_stored_verbatim_or_refused(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    for name, value in {**HOSTILE, **UNSTORABLE}.items():
        for url in (value, f"https://93.184.215.14/cb?x={value}"):  # public: no resolver needed
            r = await api.post(SEND, content=as_json({"To": "+14155550141", "Body": "x", "StatusCallback": url}),
                               headers={"content-type": "application/json"})
            if r.status_code == 200:
                async with sessions() as s:
                    kept = await s.scalar(select(Message.status_callback)
                                          .where(Message.sid == r.json()["MessageSid"]))
                assert kept == url, (name, kept)
            else:
                assert_error(r, 400, "StatusCallback")
                assert url == value or name in UNSTORABLE, (name, r.text)  # only a URL is a URL


async def test_hostile_idempotency_key_is_kept_verbatim_or_refused(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    for name, value in {**HOSTILE, "nul": "a\x00b"}.items():
        raw = (value + secrets.token_hex(4)).encode()  # headers are bytes; the app reads them as Latin-1
        payload = {"To": "+14155550142", "Body": f"idempotent {name}"}
        first = await api.post(SEND, json=payload, headers={b"Idempotency-Key": raw})
        if name == "nul":
            assert_error(first, 400, "Idempotency-Key")
            continue
        assert first.status_code == 200, (name, first.text)
        before = await count(sessions, Message)
        again = await api.post(SEND, json=payload, headers={b"Idempotency-Key": raw})
        assert again.status_code == 200 and again.json() == first.json(), name
        assert await count(sessions, Message) == before, name
        async with sessions() as s:
            assert await s.scalar(select(func.count()).select_from(IdempotencyRecord).where(
                IdempotencyRecord.key == raw.decode("latin-1"))) == 1, name


@pytest.mark.parametrize("field", ["Body", "From", "To", "SmsSid", "NumSegments"])
async def test_hostile_text_in_a_receive_field_is_stored_verbatim_or_refused_naming_it(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], field: str) -> None:
    for name, value in {**HOSTILE, "nul": "a\x00b"}.items():
        form = {"Body": "hi", "From": "+96170999888", "To": "+96170000001", "SmsSid": "SM" + secrets.token_hex(16),
                field: value if field != "SmsSid" else value + secrets.token_hex(4)}
        before = await count(sessions, InboundMessage)
        r = await api.post(RECEIVE, data=form, headers=TOKEN)
        if name == "nul":
            assert_error(r, 400, field)
            assert await count(sessions, InboundMessage) == before
            continue
        assert r.status_code == 200, (name, r.text)
        async with sessions() as s:
            row = await s.scalar(select(InboundMessage).where(InboundMessage.upstream_sid == form["SmsSid"]))
            assert row is not None, name
            event = await s.scalar(select(OutboxEvent).where(OutboxEvent.message_sid == row.sid))
        kept = {"Body": row.body, "From": row.from_number, "To": row.to_number, "SmsSid": row.upstream_sid,
                "NumSegments": (row.payload or {}).get("NumSegments")}
        assert kept[field] == form[field], (name, kept)
        assert event is not None
        forwarded = json.loads(event.body)
        assert (forwarded["Extra"]["NumSegments"] if field == "NumSegments" else forwarded[field]) == form[field]


async def _sent_message(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    """A message the upstream accepted with a fresh id, as the dispatcher leaves it."""
    r = await api.post(SEND, json={"To": "+14155550143", "Body": "status"})
    sid, upstream = r.json()["MessageSid"], "sm" + secrets.token_hex(16)
    async with sessions() as s:
        await s.execute(update(Message).where(Message.sid == sid).values(status="sent", provider="twilio", due_at=None))
        await s.execute(insert(MessagePart).values(message_sid=sid, part_no=1, provider="twilio",
                                                   upstream_id=upstream, status="sent"))
        await s.commit()
    return sid, upstream


async def test_hostile_text_in_a_status_webhook_is_stored_verbatim_or_refused_naming_it(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    for name, value in {**HOSTILE, "nul": "a\x00b"}.items():
        # ErrorCode on a known message: shown by GET as ErrorCode and ProviderStatusCode.
        sid, upstream = await _sent_message(api, sessions)
        r = await api.post(STATUS, data={"MessageSid": upstream, "MessageStatus": "failed", "ErrorCode": value},
                           headers=TOKEN)
        if name == "nul":
            assert_error(r, 400, "ErrorCode")
        else:
            assert r.status_code == 200, (name, r.text)
            m = await _stored(api, sid)
            assert m["Status"] == "failed" and m["ErrorCode"] == value and m["ProviderStatusCode"] == value, m
        # An unknown MessageSid is kept for later, under the normalised id (trimmed, lower-case).
        r = await api.post(STATUS, data={"MessageSid": value, "MessageStatus": "delivered"}, headers=TOKEN)
        if name == "nul":
            assert_error(r, 400, "MessageSid")
        else:
            assert r.status_code == 200, (name, r.text)
            async with sessions() as s:
                assert await s.scalar(select(func.count()).select_from(KeptReceipt).where(
                    KeptReceipt.upstream_id == normalise_upstream_id(value))), name
        # A status word is one of the contract's, whatever else it is.
        r = await api.post(STATUS, data={"MessageSid": upstream, "MessageStatus": value}, headers=TOKEN)
        assert_error(r, 400, "SmsStatus" if name != "nul" else "MessageStatus")


async def test_sql_in_input_executed_nothing(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    """After every test above sent `'); DROP TABLE message;--` around, the tables are all there."""
    r = await api.post(SEND, json={"To": "+14155550144", "Body": HOSTILE["sql"], "From": "Acme"})
    assert r.status_code == 200
    assert (await _stored(api, r.json()["MessageSid"]))["Body"] == HOSTILE["sql"]
    for table in (Message, MessagePart, InboundMessage, OutboxEvent, KeptReceipt, IdempotencyRecord):
        assert await count(sessions, table) >= 0


@pytest.mark.parametrize(("field", "value"), [
    ("ErrorCode", "E" * 41), ("MessageSid", "m" * 101),
], ids=["ErrorCode", "MessageSid"])
async def test_status_webhook_values_longer_than_their_columns_are_400(api: httpx.AsyncClient, field: str,
                                                                       value: str) -> None:
    form = {"MessageSid": "sm" + secrets.token_hex(8), "MessageStatus": "delivered", field: value}
    assert_error(await api.post(STATUS, data=form, headers=TOKEN), 400, field)


@pytest.mark.parametrize(("field", "value"), [("From", "1" * 41), ("To", "1" * 41), ("SmsSid", "S" * 101)])
async def test_receive_values_longer_than_their_columns_are_400(api: httpx.AsyncClient, field: str,
                                                                value: str) -> None:
    form = {"Body": "hi", "From": "+96170999888", "To": "+96170000001", "SmsSid": "SM" + secrets.token_hex(16),
            field: value}
    assert_error(await api.post(RECEIVE, data=form, headers=TOKEN), 400, field)


@pytest.mark.parametrize(("field", "value"), [
    ("SendAt", "9999-12-31T23:59:59-23:59"), ("SendAt", "0001-01-01T00:00:00+23:59"),
    ("StatusCallback", "http://[::1/cb"),
], ids=["SendAt-after-9999", "SendAt-before-0001", "StatusCallback-bad-ipv6"])
async def test_values_python_cannot_convert_are_400_naming_the_field(api: httpx.AsyncClient, field: str,
                                                                     value: str) -> None:
    r = await api.post(SEND, json={"To": "+14155550145", "Body": "x", field: value})
    assert_error(r, 400, field)


async def test_a_channel_longer_than_its_column_is_400_when_no_routes_restrict_it(db_url: str) -> None:
    async with running_app(api_settings(db_url, routes=[])) as client:
        r = await client.post(SEND, json={"To": "+14155550147", "Body": "x", "channel": "c" * 41})
        assert_error(r, 400, "channel")
        r = await client.post(SEND, json={"To": "+14155550147", "Body": "x", "channel": HOSTILE["sql"]})
        assert r.status_code == 200, r.text
        assert (await _stored(client, r.json()["MessageSid"]))["Channel"] == HOSTILE["sql"]


@pytest.mark.parametrize(("query", "field"), [
    ("to=%2B1415%00", "to"),
    ("since=9999-12-31T23:59:59-23:59", "since"),
    ("since=0001-01-01T00:00:00%2B23:59", "since"),
    ("cursor=" + base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|SM\x00").decode(), "cursor"),
    ("cursor=" + base64.urlsafe_b64encode(b"9999-12-31T23:59:59-23:59|SMx").decode(), "cursor"),
    ("cursor=%00", "cursor"),
    ("status=%27%3B%20DROP%20TABLE%20message%3B--", "status"),
    ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=1e9", "limit"),
])
async def test_bad_list_queries_are_400_naming_the_parameter(api: httpx.AsyncClient, query: str, field: str) -> None:
    assert_error(await api.get("/msg-client/messages?" + query), 400, field)


@pytest.mark.parametrize("sid", ["SM%00", "%00", "SM" + "0" * 5000, "%27%3B%20DROP%20TABLE%20message%3B--",
                                 "%3Cscript%3Ealert(1)%3C!--", "%ED%A0%80", "%FF"])
async def test_hostile_message_sids_are_404(api: httpx.AsyncClient, sid: str) -> None:
    assert_error(await api.get(f"/msg-client/messages/{sid}"), 404, "MessageSid", code="not_found")
    assert_error(await api.delete(f"/msg-client/messages/{sid}"), 404, "MessageSid", code="not_found")


# --- content types, methods, URLs ---------------------------------------------------------------------

@pytest.mark.parametrize(("content", "content_type"), [
    (b'{"To": "+14155550100", "Body": "x"}', "text/plain"),
    (b'{"To": "+14155550100", "Body": "x"}', None),
    (b"To=%2B14155550100&Body=x", FORM),
    (b'--b\r\nContent-Disposition: form-data; name="To"\r\n\r\n+14155550100\r\n--b--\r\n',
     "multipart/form-data; boundary=b"),
    (b"<sms><To>+14155550100</To><Body>x</Body></sms>", "application/xml"),
    (b'{"To": "+14155550100", "Body": "x"}', "application/octet-stream"),
], ids=["text-plain", "none", "form", "multipart", "xml", "octet-stream"])
async def test_send_in_another_content_type_is_400(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
                                                   content: bytes, content_type: str | None) -> None:
    before = await count(sessions, Message)
    headers = {"content-type": content_type} if content_type else {}
    r = await api.post(SEND, content=content, headers=headers)
    assert_error(r, 400, code="invalid_body")
    assert await count(sessions, Message) == before


@pytest.mark.parametrize("path", [RECEIVE, STATUS])
@pytest.mark.parametrize(("content", "content_type"), [
    (b'{"Body": "x", "From": "+1", "To": "+2", "SmsSid": "SM1"}', "application/json"),
    (b"Body=x&From=%2B1&To=%2B2&SmsSid=SM1", "text/plain"),
    (b"Body=x&From=%2B1&To=%2B2&SmsSid=SM1", None),
], ids=["json", "text-plain", "none"])
async def test_webhook_in_another_content_type_is_400_once_authenticated(
        api: httpx.AsyncClient, anon: httpx.AsyncClient, path: str, content: bytes, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    assert_error(await api.post(path, content=content, headers={**headers, **TOKEN}), 400, code="invalid_body")
    # Without credentials the answer is about those first: nothing else is judged for a stranger.
    assert_error(await anon.post(path, content=content, headers=headers), 401, code="webhook_auth_required")


async def test_wrong_method_and_unknown_url_answer_in_the_error_shape(api: httpx.AsyncClient) -> None:
    assert_error(await api.get(SEND), 405, code="method_not_allowed")
    assert_error(await api.put(RECEIVE, data={"Body": "x"}, headers=TOKEN), 405, code="method_not_allowed")
    assert_error(await api.post("/msg-client/sendd", json={}), 404, code="not_found")
    assert_error(await api.get("/msg-client/%00"), 404, code="not_found")


# --- authentication ---------------------------------------------------------------------------------

GARBAGE_KEYS: list[dict[str, str] | dict[bytes, bytes]] = [
    {},
    {"X-API-Key": ""},
    {"X-API-Key": "nope"},
    {"X-API-Key": API_KEY + "x"},
    {"X-API-Key": API_KEY[:-1]},
    {"X-API-Key": "x" * 10_000},
    {"X-API-Key": HOSTILE["sql_or"]},
    {b"X-API-Key": "clé".encode()},
    {b"X-API-Key": b"key\x00"},
    {"Authorization": "Bearer nope"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer"},
    {"Authorization": f"Token {API_KEY}"},
    {"Authorization": "Basic " + base64.b64encode(f"user:{API_KEY}".encode()).decode()},
    {"X-Webhook-Token": WEBHOOK_TOKEN},  # a webhook credential is not an API key
]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", SEND), ("GET", "/msg-client/messages/SM" + "0" * 32), ("DELETE", "/msg-client/messages/SM" + "0" * 32),
    ("GET", "/msg-client/messages"), ("GET", "/msg-client/providers"),
])
async def test_missing_or_garbage_api_key_is_401(anon: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
                                                 method: str, path: str) -> None:
    before = await count(sessions, Message)
    for headers in GARBAGE_KEYS:
        r = await anon.request(method, path, json={"To": "+14155550146", "Body": "x"} if method == "POST" else None,
                               headers=headers)
        assert_error(r, 401, code="unauthorized")
        assert r.headers["www-authenticate"] == "Bearer", headers
        assert "x" * 100 not in r.text and "'1'='1" not in r.text  # the key presented is not echoed
    assert await count(sessions, Message) == before


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize("path", [RECEIVE, STATUS])
async def test_missing_webhook_credentials_are_401_and_garbage_ones_403(
        anon: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], path: str) -> None:
    form = {"Body": "x", "From": "+96170999888", "To": "+96170000001", "SmsSid": "SM" + secrets.token_hex(16),
            "MessageSid": "SM" + secrets.token_hex(16), "MessageStatus": "delivered"}
    before = (await count(sessions, InboundMessage), await count(sessions, KeptReceipt))
    for headers in ({}, {"X-API-Key": API_KEY}, {"Authorization": ""}, {"X-Twilio-Signature-Typo": "x"}):
        assert_error(await anon.post(path, data=form, headers=headers), 401, code="webhook_auth_required")
    refused: list[dict[str, str] | dict[bytes, bytes]] = [
        {"X-Webhook-Token": "wrong"},
        {"X-Webhook-Token": ""},
        {b"X-Webhook-Token": b"hook-secret-token\x00"},
        {"X-Webhook-Token": "x" * 10_000},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {API_KEY}"},
        {"Authorization": _basic(b"hook:wrong")},
        {"Authorization": _basic(b"hook")},                # no colon
        {"Authorization": _basic(b"\xff\xfe:\xff")},       # not UTF-8
        {"Authorization": "Basic !!!not-base64!!!"},
        {"X-Twilio-Signature": "garbage"},
        {"X-Twilio-Signature": ""},
    ]
    for bad in refused:
        assert_error(await anon.post(path, data=form, headers=bad), 403, code="webhook_auth_failed")
    assert (await count(sessions, InboundMessage), await count(sessions, KeptReceipt)) == before
