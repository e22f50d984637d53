"""The lean /send route (app/api/send.py `SendEndpoint`, reached through app/main.py `Gateway`) answers what the
documented FastAPI operation answers: the same status, error code and field for every kind of body and header.
One difference is meant: a body that is not UTF-8 JSON, or nested deeper than the parser goes, is `invalid_body`
("not valid JSON") where FastAPI said the vaguer `bad_request` ("error parsing the body")."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import API_KEY, api_settings, running_app

from app.api import send

BODY = b'{"To": "+96170123456", "Body": "x"}'
CASES: list[tuple[str | None, bytes, dict[str, str]]] = [
    ("application/json", b"", {}),
    ("application/json", b"{", {}),
    ("application/json", b"[1]", {}),
    ("application/json", b"1", {}),
    ("application/json", b"null", {}),
    ("text/plain", BODY, {}),
    (None, BODY, {}),
    ("multipart/form-data", b"To=1", {}),
    ("application/vnd.api+json", BODY, {}),
    ("application/json; charset=utf-8", BODY, {}),
    ("application/json", b'{"To": 1, "Body": "x"}', {}),
    ("application/json", b'{"Body": "x"}', {}),
    ("application/json", b'{"To": "+96170123456"}', {}),
    ("application/json", b'{"To": ["+96170123456", 2], "Body": "x"}', {}),
    ("application/json", b'{"To": "+96170123456", "Body": "x\\u0000"}', {}),
    ("application/json", b'{"To": "+96170123456", "Body": "\xed\xa0\x80"}', {}),
    ("application/json", b'{"To": "+96170123456", "Body": "caf\xe9"}', {}),
    ("application/json", "{\"To\": \"+96170123456\", \"Body\": \"x\"}".encode("utf-16"), {}),
    ("application/json", b"[" * 5000 + b"]" * 5000, {}),
    ("application/json", b'{"To": "+96170123456", "Body": "x", "Encoding": "klingon"}', {}),
    ("application/json", b'{"To": "not a number", "Body": "x"}', {}),
    ("application/json", BODY, {"X-API-Key": ""}),
    ("application/json", BODY, {"X-API-Key": "wrong"}),
    ("application/json", BODY, {"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"}),
    ("application/json", BODY, {"X-API-Key": "", "Authorization": "Basic abc"}),
]


@pytest.fixture(scope="module")
async def both(module_db_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with running_app(api_settings(module_db_url)) as lean, running_app(api_settings(module_db_url)) as documented:
        routes = documented.app.router.routes  # type: ignore[attr-defined]
        routes.remove(send.lean_route)
        assert send.lean_route in lean.app.router.routes  # type: ignore[attr-defined]
        yield lean, documented


def _shape(r: httpx.Response) -> tuple[int, str | None, str | None, frozenset[str]]:
    body = r.json()
    err = body.get("error")
    if err is not None:
        return r.status_code, err["code"], err["field"], frozenset()
    return r.status_code, None, None, frozenset(body)


@pytest.mark.parametrize(("content_type", "content", "headers"), CASES)
async def test_the_lean_route_answers_as_the_documented_one(
        both: tuple[httpx.AsyncClient, httpx.AsyncClient], content_type: str | None, content: bytes,
        headers: dict[str, str]) -> None:
    lean, documented = both
    sent = {**({"content-type": content_type} if content_type else {}), **headers}
    a = await lean.post("/msg-client/send", content=content, headers=sent)
    b = await documented.post("/msg-client/send", content=content, headers=sent)
    expected = _shape(b)
    if expected[1] == "bad_request":
        expected = (expected[0], "invalid_body", *expected[2:])
    assert _shape(a) == expected, (a.text[:200], b.text[:200])
    assert ("x-request-id" in a.headers) and ("x-request-id" in b.headers)


async def test_idempotency_key_replays_on_the_lean_route(both: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    lean, _ = both
    first = await lean.post("/msg-client/send", content=BODY, headers={"content-type": "application/json",
                                                                        "Idempotency-Key": "lean-1"})
    again = await lean.post("/msg-client/send", content=BODY, headers={"content-type": "application/json",
                                                                        "Idempotency-Key": "lean-1"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()


async def test_accepted_messages_are_counted_by_channel(both: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    lean, _ = both
    metrics = lean.app.state.ctx.metrics  # type: ignore[attr-defined]
    before = metrics.accepted.labels("smpp")._value.get()
    r = await lean.post("/msg-client/send", json={"To": ["+96170123456", "+96171123456"], "Body": "x"})
    assert r.status_code == 200
    assert metrics.accepted.labels("smpp")._value.get() == before + 2
    text = (await lean.get("/metrics")).text
    assert 'smsgw_messages_accepted_total{channel="smpp"}' in text


async def test_a_send_without_idempotency_key_opens_no_session_of_its_own(
        both: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """Only the group commit touches the database: the request's rows are committed (and readable) when
    the 200 arrives, yet the request itself never opened a session."""
    lean, _ = both
    ctx = lean.app.state.ctx  # type: ignore[attr-defined]
    opened: list[int] = []
    real = ctx.sessions

    def counting() -> object:
        opened.append(1)
        return real()

    ctx.sessions = counting
    try:
        r = await lean.post("/msg-client/send", json={"To": "+96170123456", "Body": "no session"})
        assert r.status_code == 200
        assert opened == []
        keyed = await lean.post("/msg-client/send", json={"To": "+96170123456", "Body": "keyed"},
                                headers={"Idempotency-Key": "lean-session"})
        assert keyed.status_code == 200
        assert opened == [1]
    finally:
        ctx.sessions = real
    looked = await lean.get(f"/msg-client/messages/{r.json()['MessageSid']}")
    assert looked.status_code == 200 and looked.json()["Body"] == "no session"
