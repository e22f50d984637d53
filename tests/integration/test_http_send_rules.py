"""`/send` answers Encoding and Segments as the route's HTTP provider sends and bills them (seeds 000,
001, 002), and refuses with 400 what the route cannot honour: an explicit Encoding or Flash, or a
message with no sender anywhere. Real PostgreSQL; no upstream is contacted at accept time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import api_settings, running_app

from app.domain.capability import BULKSMS, COMMPEAK, WEBSMPP
from app.domain.encoding import Encoding, count_segments

_CRED = {"username": "user", "password": "pw"}
PROVIDERS: list[dict[str, Any]] = [
    {"name": "smsc", "type": "smpp", "system_id": "s", "password": "p"},
    {"name": "cp", "type": "http", "dialect": "commpeak", "url": "http://127.0.0.1:9/api", **_CRED,
     "default_from": "Acme"},
    {"name": "cp-nofrom", "type": "http", "dialect": "commpeak", "url": "http://127.0.0.1:9/api", **_CRED},
    {"name": "bulk", "type": "http", "dialect": "bulksms", "url": "http://127.0.0.1:9/bulksms", **_CRED,
     "default_from": "Acme"},
    {"name": "bulk-nofrom", "type": "http", "dialect": "bulksms", "url": "http://127.0.0.1:9/bulksms", **_CRED},
    {"name": "ams", "type": "http", "dialect": "websmpp", "url": "http://127.0.0.1:9/websmpp", **_CRED,
     "default_from": "Acme"},
]
ROUTES = [
    {"channel": "smpp", "providers": ["smsc"]},
    {"channel": "commpeak", "providers": ["cp"]},
    {"channel": "bulk", "providers": ["bulk"]},
    {"channel": "ams", "providers": ["ams"]},
    {"channel": "nofrom", "providers": ["cp-nofrom", "bulk-nofrom"]},
    {"channel": "nofrom-smpp", "providers": ["cp-nofrom", "smsc"]},
    {"channel": "nofrom-failover", "providers": ["cp-nofrom", "bulk"]},
    {"channel": "bulk-then-cp", "providers": ["bulk", "cp"]},
    {"channel": "mixed", "providers": ["smsc"]},
    {"channel": "mixed", "prefix": "+961", "providers": ["cp"]},
]


@pytest.fixture(scope="module")
async def api(module_db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = api_settings(module_db_url, providers=PROVIDERS, routes=ROUTES, default_channel="smpp")
    async with running_app(settings) as client:
        yield client


async def send(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post("/msg-client/send", json={"To": "+14155550100", "Body": "hi", **body})


def error(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 400, r.text
    e: dict[str, str] = r.json()["error"]
    return e


@pytest.mark.parametrize(("body", "segments", "encoding"), [
    ("a" * 160, 1, "GSM7"), ("a" * 161, 2, "GSM7"), ("a" * 304, 2, "GSM7"),
    ("a" * 306, 3, "GSM7"),  # 153 a part would say 2; seed 000 bills 152 a part
    ("Ж" * 70, 1, "UCS2"), ("Ж" * 71, 2, "UCS2"), ("Ж" * 135, 3, "UCS2"),
])
async def test_commpeak_segments_follow_its_152_character_rule(api: httpx.AsyncClient, body: str, segments: int,
                                                               encoding: str) -> None:
    r = await send(api, Body=body, channel="commpeak")
    assert r.status_code == 200, r.text
    assert (r.json()["Segments"], r.json()["Encoding"]) == (segments, encoding)
    assert count_segments("a" * 306, Encoding.GSM7) == 2  # the generic GSM 03.40 count differs


async def test_commpeak_answers_what_goes_out_for_latin1_text(api: httpx.AsyncClient) -> None:
    r = await send(api, Body="héllo ©", channel="commpeak")  # not GSM 03.38: UCS-2 on every route
    assert r.status_code == 200 and r.json()["Encoding"] == "UCS2"
    r = await send(api, Body="héllo ©", channel="smpp")  # `auto` never picks Latin-1 (issue 13)
    assert r.status_code == 200 and r.json()["Encoding"] == "UCS2"


@pytest.mark.parametrize(("extra", "field"), [
    ({"Encoding": "latin1"}, "Encoding"),
    ({"Encoding": "ucs2"}, "Encoding"),  # GSM text: the platform sends dataCoding 0, not 8
    ({"Flash": True}, "Flash"),
])
async def test_commpeak_refuses_an_encoding_or_flash_it_cannot_honour(api: httpx.AsyncClient, extra: dict[str, Any],
                                                                     field: str) -> None:
    e = error(await send(api, channel="commpeak", **extra))
    assert e["field"] == field
    assert "'commpeak'" in e["message"] and "cp" in e["message"]


async def test_commpeak_accepts_the_encoding_it_would_choose_anyway(api: httpx.AsyncClient) -> None:
    r = await send(api, channel="commpeak", Encoding="gsm7")
    assert r.status_code == 200 and r.json()["Encoding"] == "GSM7"
    r = await send(api, channel="commpeak", Body="Привет", Encoding="ucs2")
    assert r.status_code == 200 and r.json()["Encoding"] == "UCS2"


@pytest.mark.parametrize(("flash", "length", "segments"), [
    (True, 140, 1), (True, 141, 2), (False, 141, 1), (False, 160, 1), (False, 161, 2), (True, 307, 3),
])
async def test_bulksms_flash_is_counted_at_140(api: httpx.AsyncClient, flash: bool, length: int,
                                               segments: int) -> None:
    r = await send(api, channel="bulk", Body="a" * length, Flash=flash)
    assert r.status_code == 200, r.text
    assert r.json()["Segments"] == segments


@pytest.mark.parametrize(("body", "encoding", "segments"), [
    ("testing $@ Character", "GSM7", 1),  # type 3
    ("Prix: 10 © 2026", "UCS2", 1),  # © is Latin-1, not GSM 03.38: only type 2 carries it
    ("A&B #1 " + "x" * 100, "UCS2", 2),  # & and # are restricted in type 1/3 text
    ("[" * 80, "GSM7", 1), ("[" * 81, "GSM7", 2),  # the seed: [ ] { } | \ ~ ^ count twice
])
async def test_websmpp_answers_what_its_types_carry(api: httpx.AsyncClient, body: str, encoding: str,
                                                   segments: int) -> None:
    r = await send(api, channel="ams", Body=body)
    assert r.status_code == 200, r.text
    assert (r.json()["Encoding"], r.json()["Segments"]) == (encoding, segments)


@pytest.mark.parametrize(("extra", "field"), [({"Encoding": "latin1"}, "Encoding"), ({"Flash": True}, "Flash"),
                                               ({"Body": "A&B", "Encoding": "gsm7"}, "Encoding")])
async def test_websmpp_refuses_what_it_cannot_send(api: httpx.AsyncClient, extra: dict[str, Any], field: str) -> None:
    assert error(await send(api, channel="ams", **extra))["field"] == field


async def test_no_sender_anywhere_is_refused_at_send(api: httpx.AsyncClient) -> None:
    e = error(await send(api, channel="nofrom"))
    assert e["field"] == "From" and "'nofrom'" in e["message"]
    assert (await send(api, channel="nofrom", From="Acme")).status_code == 200
    # A provider of the route that has a sender (default_from), or needs none (SMPP), is enough.
    assert (await send(api, channel="nofrom-failover")).status_code == 200
    assert (await send(api, channel="nofrom-smpp")).status_code == 200


async def test_a_failover_provider_that_cannot_honour_flash_refuses_it(api: httpx.AsyncClient) -> None:
    e = error(await send(api, channel="bulk-then-cp", Flash=True))
    assert e["field"] == "Flash" and "provider cp" in e["message"]
    assert (await send(api, channel="bulk", Flash=True)).status_code == 200


async def test_each_recipient_is_counted_by_its_own_routes_provider(api: httpx.AsyncClient) -> None:
    r = await send(api, channel="mixed", To=["+14155550100", "+96170123456"], Body="a" * 306)
    assert r.status_code == 200, r.text
    assert [m["Segments"] for m in r.json()["Messages"]] == [2, 3]  # SMPP 153 a part, commpeak 152
    sid = r.json()["Messages"][1]["MessageSid"]
    assert (await api.get(f"/msg-client/messages/{sid}")).json()["Segments"] == 3


def test_capability_rules_as_the_seeds_give_them() -> None:
    assert COMMPEAK.segments("a" * 456, Encoding.GSM7) == 3 and COMMPEAK.segments("a" * 457, Encoding.GSM7) == 4
    assert COMMPEAK.segments("é" * 141, Encoding.LATIN1) == 2  # dataCoding 1–7: 140, then 134 a part
    assert BULKSMS.cut("a" * 200, Encoding.GSM7, flash=True) == "a" * 140
    assert WEBSMPP.cut("[" * 100, Encoding.GSM7) == "[" * 80
