"""End to end over real parts: HTTP /send → PostgreSQL → dispatcher → SMPP (aiosmpplib) → the bundled
simulator over TCP → receipts → outbox → ActiveMQ over STOMP, read back by a stomp.py consumer."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from conftest import STOMP_URL, api_settings, running_app
from support.gateway import wait_status
from support.quiet import until_quiet
from support.stomp_consumer import Consumer

from app.simulator import SmscSimulator


@pytest.fixture
async def gateway(module_db_url: str, sim: SmscSimulator) -> AsyncIterator[tuple[httpx.AsyncClient, Consumer, Consumer]]:
    suffix = secrets.token_hex(4)
    reports, inbound = Consumer(f"delivery-report-{suffix}"), Consumer(f"inbound-sms-{suffix}")
    for c in (reports, inbound):
        await asyncio.to_thread(c.start)
    settings = api_settings(
        module_db_url, broker_url=STOMP_URL, delivery_report_queue=reports.queue, inbound_queue=inbound.queue,
        providers=[{"name": "smsc-main", "type": "smpp", "port": sim.port, "system_id": "smppclient1",
                    "password": "password", "window": 20,
                    "receipt_id_format": "auto"}],  # one test switches the simulator to decimal receipt ids
        routes=[{"channel": "smpp", "providers": ["smsc-main"]}],
        webhook_auth="token:x",
    )
    async with running_app(settings, start_workers=True) as client:
        for _ in range(200):
            if (await client.get("/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        yield client, reports, inbound
    for c in (reports, inbound):
        await asyncio.to_thread(c.stop)


async def test_single_message_delivered_with_one_report(gateway: Any, sim: SmscSimulator) -> None:
    client, reports, _ = gateway
    r = await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "Hello SMPP", "From": "Acme"})
    sid = r.json()["MessageSid"]
    m = await wait_status(client, sid, {"delivered"})
    assert m["Status"] == "delivered" and m["ProviderStatusCode"] == "DELIVRD" and m["Provider"] == "smsc-main"
    assert len(m["UpstreamIds"]) == 1
    got = await reports.wait_for(1)
    assert [b["MessageSID"] for b in got] == [sid]
    assert got[0]["DeliveryStatus"] == "DELIVERED" and got[0]["ProviderStatusCode"] == "DELIVRD"
    headers = reports.headers()[0]
    assert headers["type"] == "smpp" and headers["persistent"] == "true"
    assert headers["content-type"] == "application/json" and "content-length" not in headers
    assert headers["smsgw-report-id"] == f"report:{sid}"
    assert await until_quiet(lambda: len(reports.bodies())) == 1  # no late duplicate


async def test_undelivered_and_rejected_outcomes(gateway: Any, sim: SmscSimulator) -> None:
    client, reports, _ = gateway
    undeliv = (await client.post("/msg-client/send", json={"To": "+14155550001", "Body": "x"})).json()["MessageSid"]
    rejected = (await client.post("/msg-client/send", json={"To": "+14155550003", "Body": "x"})).json()["MessageSid"]
    bad_dest = (await client.post("/msg-client/send", json={"To": "+14155559999", "Body": "x"})).json()["MessageSid"]
    m1 = await wait_status(client, undeliv, {"undelivered"})
    m2 = await wait_status(client, rejected, {"failed"})
    m3 = await wait_status(client, bad_dest, {"failed"})
    assert (m1["Status"], m1["ProviderStatusCode"]) == ("undelivered", "UNDELIV")
    assert (m2["Status"], m2["ProviderStatusCode"]) == ("failed", "REJECTD")
    assert (m3["Status"], m3["ProviderStatusCode"]) == ("failed", "0x0000000B")
    got = {b["MessageSID"]: b for b in await reports.wait_for(3)}
    assert {got[s]["DeliveryStatus"] for s in (undeliv, rejected, bad_dest)} == {"FAILED"}
    assert got[bad_dest]["ProviderStatusCode"] == "0x0000000B"


async def test_long_unicode_message_in_parts(gateway: Any, sim: SmscSimulator) -> None:
    client, reports, _ = gateway
    text = "مرحبا " * 30
    r = await client.post("/msg-client/send", json={"To": "+96170123457", "Body": text})
    assert r.json()["Encoding"] == "UCS2" and r.json()["Segments"] == 3
    m = await wait_status(client, r.json()["MessageSid"], {"delivered"})
    assert m["Status"] == "delivered" and len(m["UpstreamIds"]) == 3


async def test_mo_reaches_inbound_queue(gateway: Any, sim: SmscSimulator) -> None:
    client, _, inbound = gateway
    await sim.inject_mo("+96170999888", "+96170000001", "Reply from a customer")
    await sim.inject_mo("+96170999889", "+96170000001", "Long reply " * 30, concat="udh")
    await sim.inject_mo("+96170999887", "+96170000001", "رد طويل " * 20, data_coding=8, concat="sar")
    got = await inbound.wait_for(3)
    bodies = sorted(b["Body"] for b in got)
    assert bodies == sorted(["Reply from a customer", "Long reply " * 30, "رد طويل " * 20])
    assert {b["From"] for b in got} == {"+96170999888", "+96170999889", "+96170999887"}


async def test_scheduled_message_waits_for_send_at(gateway: Any, sim: SmscSimulator) -> None:
    from datetime import UTC, datetime, timedelta

    client, _, _ = gateway
    when = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    r = await client.post("/msg-client/send", json={"To": "+96170123458", "Body": "later", "SendAt": when})
    sid = r.json()["MessageSid"]
    await asyncio.sleep(0.5)
    assert (await client.get(f"/msg-client/messages/{sid}")).json()["Status"] == "scheduled"
    m = await wait_status(client, sid, {"delivered"}, timeout=20)
    assert m["Status"] == "delivered"
    assert [h["Status"] for h in m["History"]][:2] == ["scheduled", "queued"]


async def send_many(client: httpx.AsyncClient, n: int, prefix: str = "+1415600", **extra: Any) -> list[str]:
    sids = []
    for i in range(n):
        r = await client.post("/msg-client/send", json={"To": f"{prefix}{i:03d}7", "Body": f"m{i}", **extra})
        sids.append(r.json()["MessageSid"])
    return sids


async def all_final(client: httpx.AsyncClient, sids: list[str], want: set[str], timeout: float = 60.0) -> dict[str, str]:
    deadline = asyncio.get_running_loop().time() + timeout
    states: dict[str, str] = {}
    while asyncio.get_running_loop().time() < deadline:
        states = {s: (await client.get(f"/msg-client/messages/{s}")).json()["Status"] for s in sids}
        if all(v in want for v in states.values()):
            break
        await asyncio.sleep(0.2)
    return states


@pytest.mark.parametrize(("mode", "body", "expect"), [
    ("split", "a" * 200, {"esm_class": 0x40, "parts": 2, "dc": 0}),
    ("split_sar", "é" * 10 + "©" * 120, {"esm_class": 0, "parts": 2, "dc": 8, "sar": True}),
    ("payload", "ж" * 100, {"esm_class": 0, "parts": 1, "dc": 8, "payload": True}),
    ("cut", "b" * 200, {"esm_class": 0, "parts": 1, "dc": 0}),
])
async def test_long_message_modes_on_the_wire(gateway: Any, sim: SmscSimulator, mode: str, body: str,
                                              expect: dict[str, Any]) -> None:
    client, _, _ = gateway
    to = "+4477009" + secrets.token_hex(2).translate(str.maketrans("abcdef", "123456"))
    r = await client.post("/msg-client/send", json={"To": to, "Body": body, "LongMessageMode": mode})
    m = await wait_status(client, r.json()["MessageSid"], {"delivered"})
    assert m["Status"] == "delivered"
    recs = [rec for rec in sim.received if rec.destination == to.lstrip("+")]
    assert len(recs) == expect["parts"] and len(m["UpstreamIds"]) == expect["parts"]
    assert {rec.esm_class for rec in recs} == {expect["esm_class"]}
    assert {rec.data_coding for rec in recs} == {expect["dc"]}
    if expect.get("sar"):
        assert all(0x020C in rec.tlvs and 0x020F in rec.tlvs for rec in recs)
    if expect.get("payload"):
        assert 0x0424 in recs[0].tlvs and recs[0].short_message == b""
    if mode == "cut":
        assert len(recs[0].short_message) == 160


async def test_flash_and_validity(gateway: Any, sim: SmscSimulator) -> None:
    client, _, _ = gateway
    r = await client.post("/msg-client/send", json={"To": "+4477001100", "Body": "flash", "Flash": True,
                                                    "ValidityPeriod": 3600})
    await wait_status(client, r.json()["MessageSid"], {"delivered"})
    rec = [x for x in sim.received if x.destination == "4477001100"][-1]
    assert rec.data_coding == 0x10
    r = await client.post("/msg-client/send", json={"To": "+4477001101", "Body": "flash ça", "Flash": True})
    assert (r.json()["Encoding"], r.json()["Segments"]) == ("UCS2", 1)
    await wait_status(client, r.json()["MessageSid"], {"delivered"})
    rec = [x for x in sim.received if x.destination == "4477001101"][-1]
    assert (rec.data_coding, rec.text) == (0x18, "flash ça")  # class 0 UCS-2, never 0x14 (8-bit data)


async def test_decimal_receipt_for_hex_id_and_receipt_before_response(gateway: Any, sim: SmscSimulator) -> None:
    client, reports, _ = gateway
    sim.configure(receipt_id_format="decimal", receipt_before_response=True, receipt_delay=0.0,
                  duplicate_receipts=True)
    try:
        sids = await send_many(client, 20, "+4477002")
        states = await all_final(client, sids, {"delivered"})
    finally:
        sim.configure(receipt_id_format="same", receipt_before_response=False, receipt_delay=0.02,
                      duplicate_receipts=False)
    assert set(states.values()) == {"delivered"}
    got = await reports.wait_for(20)
    mine = [b for b in got if b["MessageSID"] in sids]
    assert sorted(b["MessageSID"] for b in mine) == sorted(sids)  # once each despite duplicate receipts
    m = (await client.get(f"/msg-client/messages/{sids[0]}")).json()
    assert any(not h["Applied"] for h in m["History"])  # the duplicate receipt was recorded, not applied


async def test_throttled_messages_back_off_and_arrive(gateway: Any, sim: SmscSimulator) -> None:
    client, _, _ = gateway
    sim.configure(queue_full_every=3)
    try:
        sids = await send_many(client, 30, "+4477003")
        states = await all_final(client, sids, {"delivered"})
    finally:
        sim.configure(queue_full_every=0)
    assert set(states.values()) == {"delivered"}
    assert sim.stats.submit_sm_resp[0x14] > 0


async def test_connection_drops_mid_stream_lose_nothing(gateway: Any, sim: SmscSimulator) -> None:
    client, _, _ = gateway
    sids = await send_many(client, 200, "+4477004")
    await asyncio.sleep(0.1)
    await sim.drop_all()
    await asyncio.sleep(0.3)
    await sim.drop_all()
    states = await all_final(client, sids, {"delivered"}, timeout=90)
    assert set(states.values()) == {"delivered"}, {v for v in states.values()}
    dups = sum(1 for (dest, _), n in sim.submit_count_by_dest.items() if dest.startswith("4477004") and n > 1)
    assert dups <= 200 * 0.1  # only submits whose answer the drop cut off are sent again
