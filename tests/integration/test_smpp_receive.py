"""The receive side of SMPP on the wire (issue #13 items 7-11): the gateway with its workers on real
PostgreSQL and ActiveMQ, the bundled simulator over TCP, each test with its own simulator rules."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from conftest import STOMP_URL, api_settings, running_app
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.gateway import wait_status
from support.stomp_consumer import Consumer

from app.db.tables import MessagePart
from app.providers.smpp.pdu import CommandId, Tag, encode_body, tlv_cstr, tlv_int
from app.simulator import SimulatorConfig, SmscSimulator
from app.simulator.receipts import Outbound


@asynccontextmanager
async def gateway(db_url: str, sim_config: SimulatorConfig | None = None,
                  **provider: Any) -> AsyncIterator[tuple[httpx.AsyncClient, SmscSimulator, Consumer]]:
    """The simulator, a consumer of the inbound queue, and the gateway bound to the simulator."""
    sim = SmscSimulator(sim_config or SimulatorConfig(port=0, receipt_delay=0.02))
    await sim.start()
    inbound = Consumer(f"inbound-sms-{secrets.token_hex(4)}")
    await asyncio.to_thread(inbound.start)
    settings = api_settings(
        db_url, broker_url=STOMP_URL, delivery_report_queue=f"delivery-report-{secrets.token_hex(4)}",
        inbound_queue=inbound.queue, webhook_auth="token:x",
        providers=[{"name": "smsc-main", "type": "smpp", "port": sim.port, "system_id": "smppclient1",
                    "password": "password", "window": 20, **provider}],
        routes=[{"channel": "smpp", "providers": ["smsc-main"]}])
    try:
        async with running_app(settings, start_workers=True) as client:
            for _ in range(200):
                if (await client.get("/health/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            yield client, sim, inbound
    finally:
        await asyncio.to_thread(inbound.stop)
        await sim.stop()


async def send(client: httpx.AsyncClient, to: str, body: str = "hello") -> str:
    r = await client.post("/msg-client/send", json={"To": to, "Body": body, "From": "Acme"})
    assert r.status_code == 200, r.text
    return str(r.json()["MessageSid"])


def number() -> str:
    return "+4477" + str(secrets.randbelow(10**7)).zfill(7) + "7"


def raw_deliver(esm_class: int, upstream_id: str, text: str = "", stat: int | None = None) -> Outbound:
    """A deliver_sm the simulator would not write by itself (to any receiver)."""
    tlvs: dict[int, bytes] = {Tag.RECEIPTED_MESSAGE_ID: tlv_cstr(upstream_id)}
    if stat is not None:
        tlvs[Tag.MESSAGE_STATE] = tlv_int(stat)
    body = encode_body(CommandId.DELIVER_SM, {"source_addr": "4477000001", "destination_addr": "Acme",
                                              "esm_class": esm_class, "short_message": text.encode()}, tlvs)
    return Outbound("receipt", None, body)


async def test_intermediate_notification_lands_in_history_and_not_on_inbound_sms(module_db_url: str) -> None:
    cfg = SimulatorConfig(port=0, receipt_delay=0.2, intermediate_notifications=True)
    async with gateway(module_db_url, cfg) as (client, sim, inbound):
        sid = await send(client, number())
        m = await wait_status(client, sid, {"delivered"})
        assert m["Status"] == "delivered"
        notes = [h for h in m["History"] if h["Source"] == "smpp:smsc-main:intermediate"]
        assert [(h["Status"], h["ProviderStatusCode"]) for h in notes] == [("sent", "ENROUTE")]
        await asyncio.sleep(0.5)
        assert inbound.bodies() == []  # it was no customer's message


async def test_esm_class_message_types_on_the_wire(module_db_url: str) -> None:
    """0x18 conversation abort: neither a receipt nor an MO; 0x08 SME delivery ack: delivered."""
    async with gateway(module_db_url, SimulatorConfig(port=0, drop_receipts=True)) as (client, sim, inbound):
        sid = await send(client, number())
        m = await wait_status(client, sid, {"sent"})
        (upstream,) = m["UpstreamIds"]
        sim.dispatch([raw_deliver(0x18, upstream, f"id:{upstream} stat:DELIVRD")])
        await asyncio.sleep(0.5)
        assert (await client.get(f"/msg-client/messages/{sid}")).json()["Status"] == "sent"
        assert inbound.bodies() == []
        sim.dispatch([raw_deliver(0x08, upstream)])  # an SME acknowledgement without a stat
        m = await wait_status(client, sid, {"delivered"})
        assert (m["Status"], m["ProviderStatusCode"]) == ("delivered", "DELIVRD")
        assert sim.stats.deliver_sm_errors == 0  # every one acknowledged with ESME_ROK


async def test_receipt_by_data_sm_is_applied_with_its_vendor_tlvs(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    cfg = SimulatorConfig(port=0, receipt_delay=0.02, receipts_as_data_sm=True, vendor_tlvs=True)
    async with gateway(module_db_url, cfg) as (client, sim, _):
        delivered, undelivered = await send(client, number()), await send(client, number()[:-4] + "0001")
        assert (await wait_status(client, delivered, {"delivered"}))["ProviderStatusCode"] == "DELIVRD"
        assert (await wait_status(client, undelivered, {"undelivered"}))["ProviderStatusCode"] == "UNDELIV"
        assert sim.stats.deliver_sm_resp >= 2 and sim.stats.deliver_sm_errors == 0
    async with module_sessions() as s:
        tlvs = (await s.scalars(select(MessagePart.tlvs).where(MessagePart.message_sid == delivered))).one()
    assert tlvs is not None and tlvs["tlvs"]["mccmnc"] == "25001" and tlvs["tlvs"]["parts"] == 1


async def test_mo_by_data_sm_reaches_inbound_queue(module_db_url: str) -> None:
    async with gateway(module_db_url) as (_client, sim, inbound):
        await sim.inject_mo("96170999777", "96170000001", "Réponse par data_sm", data_coding=8, data_sm=True)
        got = await inbound.wait_for(1, timeout=10)
        assert [(b["From"], b["Body"]) for b in got] == [("+96170999777", "Réponse par data_sm")]


async def test_receipt_before_response_keeps_its_vendor_tlvs(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    cfg = SimulatorConfig(port=0, receipt_delay=0.0, receipt_before_response=True, response_delay=0.1,
                          vendor_tlvs=True)
    async with gateway(module_db_url, cfg) as (client, _sim, _):
        sid = await send(client, number())
        assert (await wait_status(client, sid, {"delivered"}))["Status"] == "delivered"
    async with module_sessions() as s:
        tlvs = (await s.scalars(select(MessagePart.tlvs).where(MessagePart.message_sid == sid))).one()
    assert tlvs is not None and tlvs["tlvs"] == {"cost": "0.0500", "flags": 0, "parts": 1, "mccmnc": "25001",
                                                 "additional_status": 0}
    assert tlvs["receipt"]["stat"] == "DELIVRD"


async def test_query_sm_resolves_messages_whose_receipt_never_came(module_db_url: str) -> None:
    cfg = SimulatorConfig(port=0, receipt_delay=0.05, drop_receipts=True)
    async with gateway(module_db_url, cfg, query_after=0.5, query_interval=0.5) as (client, sim, _):
        delivered, undelivered = await send(client, number()), await send(client, number()[:-4] + "0001")
        forgotten = await send(client, number())
        m = await wait_status(client, forgotten, {"sent"})
        sim.messages.pop(m["UpstreamIds"][0])  # the SMSC no longer knows it: ESME_RQUERYFAIL
        m1 = await wait_status(client, delivered, {"delivered"})
        m2 = await wait_status(client, undelivered, {"undelivered"})
        m3 = await wait_status(client, forgotten, {"undelivered"})
    assert (m1["Status"], m1["ProviderStatusCode"]) == ("delivered", "DELIVRD")
    assert [h["Source"] for h in m1["History"]][-1] == "query_sm:smsc-main"
    assert (m2["Status"], m2["ProviderStatusCode"]) == ("undelivered", "UNDELIV")
    assert (m3["Status"], m3["ProviderStatusCode"], m3["ErrorCode"]) == (
        "undelivered", "NO_RECEIPT", "query_sm 0x00000067")
    assert sim.stats.query_sm >= 3 and sim.stats.receipts_sent == 0


async def test_ids_reused_after_an_smsc_restart_match_the_new_messages(module_db_url: str) -> None:
    start = 7_000_000 + secrets.randbelow(10**6) * 10
    cfg = SimulatorConfig(port=0, receipt_delay=0.02, id_start=start, drop_receipts=True)
    async with gateway(module_db_url, cfg) as (client, sim, _):
        old = [await send(client, number()) for _ in range(3)]
        old_ids = [(await wait_status(client, sid, {"sent"}))["UpstreamIds"] for sid in old]
        # The SMSC restarts: its counter starts again and the receipts of the old messages are lost.
        sim.restart_ids(start)
        sim.configure(drop_receipts=False)
        new = [await send(client, number()) for _ in range(3)]
        new_views = [await wait_status(client, sid, {"delivered"}) for sid in new]
        await asyncio.sleep(0.3)
        old_views = [(await client.get(f"/msg-client/messages/{sid}")).json() for sid in old]
    assert [v["UpstreamIds"] for v in new_views] == old_ids  # the same ids again
    assert [v["Status"] for v in new_views] == ["delivered"] * 3
    assert [v["Status"] for v in old_views] == ["sent"] * 3
    assert not any(h["Status"] == "delivered" for v in old_views for h in v["History"])
