"""End to end over real parts: HTTP /send → PostgreSQL → dispatcher → SMPP (aiosmpplib) → the bundled
simulator over TCP → receipts → outbox → ActiveMQ over STOMP, read back by a stomp.py consumer."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import stomp
from conftest import STOMP_URL, api_settings, running_app

from app.simulator import SimulatorConfig, SmscSimulator


class Collector(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.lock = threading.Lock()

    def on_message(self, frame: Any) -> None:
        with self.lock:
            self.frames.append(frame)


def stomp_host_port() -> tuple[str, int]:
    hostport = STOMP_URL.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


class Consumer:
    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.listener = Collector()
        self.conn = stomp.Connection([stomp_host_port()])
        self.conn.set_listener("c", self.listener)

    def start(self) -> None:
        self.conn.connect(wait=True)
        self.conn.subscribe(f"/queue/{self.queue}", id=1, ack="auto")

    def stop(self) -> None:
        self.conn.disconnect()

    def bodies(self) -> list[dict[str, Any]]:
        with self.listener.lock:
            return [orjson.loads(f.body) for f in self.listener.frames]

    def headers(self) -> list[dict[str, str]]:
        with self.listener.lock:
            return [dict(f.headers) for f in self.listener.frames]

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.bodies()) < n and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return self.bodies()


@pytest.fixture
async def sim() -> AsyncIterator[SmscSimulator]:
    simulator = SmscSimulator(SimulatorConfig(port=0, receipt_delay=0.02))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def gateway(module_db_url: str, sim: SmscSimulator) -> AsyncIterator[tuple[httpx.AsyncClient, Consumer, Consumer]]:
    suffix = secrets.token_hex(4)
    reports, inbound = Consumer(f"delivery-report-{suffix}"), Consumer(f"inbound-sms-{suffix}")
    for c in (reports, inbound):
        await asyncio.to_thread(c.start)
    settings = api_settings(
        module_db_url, broker_url=STOMP_URL, delivery_report_queue=reports.queue, inbound_queue=inbound.queue,
        providers=[{"name": "smsc-main", "type": "smpp", "port": sim.port, "system_id": "smppclient1",
                    "password": "password", "window": 20}],
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


async def wait_status(client: httpx.AsyncClient, sid: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        m: dict[str, Any] = (await client.get(f"/msg-client/messages/{sid}")).json()
        if m["Status"] in statuses or asyncio.get_running_loop().time() > deadline:
            return m
        await asyncio.sleep(0.05)


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
    await asyncio.sleep(0.3)
    assert len(reports.bodies()) == 1


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
    got = await inbound.wait_for(2)
    bodies = sorted(b["Body"] for b in got)
    assert bodies == sorted(["Reply from a customer", "Long reply " * 30])
    assert {b["From"] for b in got} == {"+96170999888", "+96170999889"} or all(b["From"] for b in got)


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
