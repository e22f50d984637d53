"""POST /msg-client/send, GET/DELETE /msg-client/messages on real PostgreSQL (workers off)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from conftest import API_KEY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import Message, StatusEvent


async def count_messages(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(Message)) or 0)


async def test_send_single_is_queued_and_stored(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": "96170123456", "Body": "hello", "From": "Acme"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["Status"] == "queued"
    assert body["To"] == "+96170123456"
    assert body["Segments"] == 1 and body["Encoding"] == "GSM7"
    assert body["MessageSid"].startswith("SM") and len(body["MessageSid"]) == 34

    got = await api.get(f"/msg-client/messages/{body['MessageSid']}")
    assert got.status_code == 200
    m = got.json()
    assert m["Status"] == "queued" and m["From"] == "Acme" and m["Body"] == "hello"
    assert m["Channel"] == "smpp" and m["UpstreamIds"] == []
    assert [h["Status"] for h in m["History"]] == ["queued"]


async def test_local_number_without_default_country_is_400_with_a_hint(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": "70123456", "Body": "hello"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "To" and "SMSGW_DEFAULT_COUNTRY" in err["message"] and "+" in err["message"]


async def test_default_country_reads_national_numbers(sqlite_url: str) -> None:
    """SMSGW_DEFAULT_COUNTRY=LB: the same local number is +961..."""
    from conftest import api_settings, running_app

    async with running_app(api_settings(sqlite_url, default_country="LB")) as client:
        r = await client.post("/msg-client/send", json={"To": "70123456", "Body": "hello"})
        assert r.status_code == 200, r.text
        assert r.json()["To"] == "+96170123456"


async def test_bearer_auth_is_accepted(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": "+14155550100", "Body": "x"},
                       headers={"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text


async def test_missing_and_unknown_keys_are_401(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": "+14155550100", "Body": "x"}, headers={"X-API-Key": ""})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await api.post("/msg-client/send", json={"To": "+14155550100", "Body": "x"}, headers={"X-API-Key": "nope"})
    assert r.status_code == 401


async def test_unicode_and_long_bodies_report_segments(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": "+96170123456", "Body": "مرحبا بك"})
    assert r.json()["Encoding"] == "UCS2" and r.json()["Segments"] == 1
    r = await api.post("/msg-client/send", json={"To": "+96170123456", "Body": "a" * 161})
    assert r.json()["Encoding"] == "GSM7" and r.json()["Segments"] == 2
    r = await api.post("/msg-client/send", json={"To": "+96170123456", "Body": "😀" * 36})
    assert r.json()["Encoding"] == "UCS2" and r.json()["Segments"] == 2


async def test_bulk_list_and_comma_string(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": ["+14155550101", "+14155550102"], "Body": "bulk"})
    assert r.status_code == 200
    msgs = r.json()["Messages"]
    assert [m["To"] for m in msgs] == ["+14155550101", "+14155550102"]
    r = await api.post("/msg-client/send", json={"To": "+14155550103, +14155550104", "Body": "bulk"})
    assert len(r.json()["Messages"]) == 2


async def test_bulk_ten_thousand_in_one_request(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    before = await count_messages(sessions)
    to = [f"+1415{5000000 + i:07d}" for i in range(10_000)]
    r = await api.post("/msg-client/send", json={"To": to, "Body": "ten thousand"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["Messages"]) == 10_000
    assert await count_messages(sessions) == before + 10_000


async def test_ten_thousand_and_one_recipients_is_400_and_writes_nothing(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    before = await count_messages(sessions)
    to = [f"+1415{6000000 + i:07d}" for i in range(10_001)]
    r = await api.post("/msg-client/send", json={"To": to, "Body": "too many"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "To"
    assert await count_messages(sessions) == before


async def test_one_bad_number_in_a_bulk_rejects_all(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    before = await count_messages(sessions)
    r = await api.post("/msg-client/send", json={"To": ["+14155550105", "+1415abc0106"], "Body": "x"})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "To[1]"
    assert await count_messages(sessions) == before


async def test_invalid_inputs_answer_400_in_contract_shape(api: httpx.AsyncClient) -> None:
    cases: list[tuple[object, str]] = [
        ({"Body": "no to"}, "To"),
        ({"To": "+14155550100"}, "Body"),
        ({"To": "+14155550100", "Body": ""}, "Body"),
        ({"To": "12", "Body": "x"}, "To"),
        ({"To": "+1415555010O", "Body": "x"}, "To"),
        ({"To": "+14155550100", "Body": "x", "From": "ThisIsTooLongAName"}, "From"),
        ({"To": "+14155550100", "Body": "x", "From": "1234567890123456"}, "From"),
        ({"To": "+14155550100", "Body": "x", "channel": "pigeon"}, "channel"),
        ({"To": "+14155550100", "Body": "x", "SendAt": "tomorrow"}, "SendAt"),
        ({"To": "+14155550100", "Body": "x", "SendAt": "2030-01-01T10:00:00"}, "SendAt"),
        ({"To": "+14155550100", "Body": "x", "Encoding": "ebcdic"}, "Encoding"),
        ({"To": "+14155550100", "Body": "Привет", "Encoding": "gsm7"}, "Body"),
        ({"To": "+14155550100", "Body": "x", "LongMessageMode": "fold"}, "LongMessageMode"),
        ({"To": "+14155550100", "Body": "x", "ValidityPeriod": 0}, "ValidityPeriod"),
        ({"To": "+14155550100", "Body": "x", "ValidityPeriod": "soon"}, "ValidityPeriod"),
        ({"To": "+14155550100", "Body": "x", "StatusCallback": "ftp://x"}, "StatusCallback"),
        ({"To": "+14155550100", "Body": 5}, "Body"),
        ({"To": "+14155550100", "Body": "x", "Flash": "maybe"}, "Flash"),
    ]
    for payload, field in cases:
        r = await api.post("/msg-client/send", json=payload)
        assert r.status_code == 400, (payload, r.status_code, r.text)
        err = r.json()["error"]
        assert err["field"] == field, (payload, err)
        assert err["code"] and err["message"]


async def test_malformed_json_and_wrong_shapes_are_400(api: httpx.AsyncClient) -> None:
    for content in (b"{not json", b"[1,2]", b"\xff\xfe", b""):
        r = await api.post("/msg-client/send", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400, (content, r.text)
        assert "error" in r.json()


async def test_unknown_url_is_404_json(api: httpx.AsyncClient) -> None:
    r = await api.get("/msg-client/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_oversized_body_is_413(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", content=b"x" * (3 * 1024 * 1024),
                       headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_idempotency_key_replays_first_answer(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    payload = {"To": "+14155550110", "Body": "once"}
    headers = {"Idempotency-Key": "order-42-" + datetime.now(UTC).isoformat()}
    first = await api.post("/msg-client/send", json=payload, headers=headers)
    before = await count_messages(sessions)
    second = await api.post("/msg-client/send", json=payload, headers=headers)
    assert second.status_code == 200 and second.json() == first.json()
    assert await count_messages(sessions) == before
    other = await api.post("/msg-client/send", json={**payload, "Body": "different"}, headers=headers)
    assert other.status_code == 400 and other.json()["error"]["field"] == "Idempotency-Key"


async def test_scheduled_message_and_cancel(api: httpx.AsyncClient) -> None:
    when = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = await api.post("/msg-client/send", json={"To": "+14155550111", "Body": "later", "SendAt": when})
    assert r.json()["Status"] == "scheduled"
    sid = r.json()["MessageSid"]
    m = (await api.get(f"/msg-client/messages/{sid}")).json()
    assert m["SendAt"] is not None
    c = await api.delete(f"/msg-client/messages/{sid}")
    assert c.status_code == 200 and c.json()["Status"] == "canceled"
    assert [h["Status"] for h in c.json()["History"]] == ["scheduled", "canceled"]
    again = await api.delete(f"/msg-client/messages/{sid}")
    assert again.status_code == 409
    assert (await api.delete("/msg-client/messages/SMnope")).status_code == 404


async def test_get_unknown_message_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/msg-client/messages/SM" + "0" * 32)
    assert r.status_code == 404


async def test_list_filters_and_cursor(api: httpx.AsyncClient) -> None:
    to = "+14155550777"
    sids = [(await api.post("/msg-client/send", json={"To": to, "Body": f"n{i}"})).json()["MessageSid"]
            for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"to": to, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/msg-client/messages", params=params)).json()
        seen += [m["MessageSid"] for m in page["Messages"]]
        cursor = page["NextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(sids) and len(seen) == 5
    r = await api.get("/msg-client/messages", params={"status": "bogus"})
    assert r.status_code == 400
    r = await api.get("/msg-client/messages", params={"status": "queued", "to": to})
    assert len(r.json()["Messages"]) == 5


async def test_list_since_returns_messages_created_at_or_after(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    from sqlalchemy import update

    to = "+14155550778"
    old, new = [(await api.post("/msg-client/send", json={"To": to, "Body": b})).json()["MessageSid"]
                for b in ("old", "new")]
    week_ago = datetime.now(UTC) - timedelta(days=7)
    async with sessions() as s:
        await s.execute(update(Message).where(Message.sid == old).values(created_at=week_ago))
        await s.commit()
    def listed(r: httpx.Response) -> list[str]:
        return [m["MessageSid"] for m in r.json()["Messages"]]

    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = await api.get("/msg-client/messages", params={"to": to, "since": day_ago})
    assert r.status_code == 200 and listed(r) == [new]
    r = await api.get("/msg-client/messages", params={"to": to, "since": week_ago.isoformat()})
    assert listed(r) == [new, old]  # at or after, newest first
    just_after = (week_ago + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # `Z` is UTC
    r = await api.get("/msg-client/messages", params={"to": to, "since": just_after})
    assert listed(r) == [new]
    r = await api.get("/msg-client/messages", params={"since": "2026-12-01T09:00:00"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "since"


async def test_injection_strings_are_stored_verbatim(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    text = "'; DROP TABLE message; -- <script>alert(1)</script> %s {0}"
    r = await api.post("/msg-client/send", json={"To": "+14155550112", "Body": text})
    sid = r.json()["MessageSid"]
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Body"] == text
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(StatusEvent)) is not None


async def test_rate_limit_answers_429_with_retry_after(db_url: str) -> None:
    from conftest import api_settings, running_app

    async with running_app(api_settings(db_url, rate_limit_per_second=1, rate_limit_burst=2)) as client:
        codes = [(await client.post("/msg-client/send", json={"To": "+14155550130", "Body": "x"})) for _ in range(4)]
    assert [c.status_code for c in codes[:2]] == [200, 200]
    assert codes[3].status_code == 429 and int(codes[3].headers["Retry-After"]) >= 1
    assert codes[3].json()["error"]["code"] == "rate_limited"


async def test_internal_error_is_500_without_stack_and_logged_with_request_id(
        api: httpx.AsyncClient, monkeypatch: object, caplog: object) -> None:
    import logging

    import app.api.send as send_module

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(send_module, "accept", boom)  # type: ignore[attr-defined]
    caplog.set_level(logging.ERROR)  # type: ignore[attr-defined]
    # Starlette re-raises after answering (for the server to log); uvicorn swallows it, this transport must too.
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=api.headers) as client:
        r = await client.post("/msg-client/send", json={"To": "+14155550131", "Body": "x"},
                              headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error" and "req-42" in r.json()["error"]["message"]
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert "unhandled error" in caplog.text  # type: ignore[attr-defined]


async def test_providers_listing(api: httpx.AsyncClient) -> None:
    r = await api.get("/msg-client/providers")
    assert r.status_code == 200
    names = [p["name"] for p in r.json()["Providers"]]
    assert names == ["smsc-main", "twilio"]
    assert (await api.get("/msg-client/providers", headers={"X-API-Key": "bad"})).status_code == 401


async def test_auto_never_answers_latin1_and_segments_count_what_goes_on_the_air(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": "+96170123456", "Body": "Ça coûte cinq à Mâcon" * 4})
    assert (r.json()["Encoding"], r.json()["Segments"]) == ("UCS2", 2)  # 84 UTF-16 units; Latin-1 would say 1
    r = await api.post("/msg-client/send", json={"To": "+96170123456", "Body": "[" * 81})
    assert (r.json()["Encoding"], r.json()["Segments"]) == ("GSM7", 2)  # 162 septets


async def test_latin1_asked_for_on_a_route_that_does_not_take_it_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post("/msg-client/send", json={"To": "+96170123456", "Body": "ça", "Encoding": "latin1"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "Encoding"


async def test_latin1_on_an_smpp_provider_configured_for_it(db_url: str) -> None:
    from conftest import api_settings, running_app

    settings = api_settings(db_url, providers=[
        {"name": "smsc-main", "type": "smpp", "system_id": "smppclient1", "password": "password", "latin1": True}],
        routes=[{"channel": "smpp", "providers": ["smsc-main"]}])
    async with running_app(settings) as client:
        r = await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "ç" * 140, "Encoding": "latin1"})
        assert (r.status_code, r.json()["Encoding"], r.json()["Segments"]) == (200, "LATIN1", 1)
        flash = await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "ç", "Encoding": "latin1",
                                                            "Flash": True})
        assert flash.status_code == 400 and flash.json()["error"]["field"] == "Encoding"  # no class-0 Latin-1
