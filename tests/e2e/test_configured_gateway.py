"""Settings of contract §5 seen working end to end (issue #17.10): `bind: transmitter_receiver`,
SMSGW_INBOUND_FORWARD_URL, SMSGW_BROKER_USER/PASSWORD and SMSGW_WORKERS_ENABLED=false, each on the real
gateway (its workers, the bundled simulator over TCP, the embedded broker, a loopback HTTP receiver)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
import stomp
from conftest import api_settings, running_app
from support.gateway import wait_status
from support.servers import free_port

from app.simulator import SmscSimulator


@asynccontextmanager
async def gateway(db_url: str, sim: SmscSimulator, broker_port: int, *, provider: dict[str, Any] | None = None,
                  **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway as `smsgw serve` runs it (workers as settings say), SMPP to `sim`, the embedded broker on
    `broker_port`; once /health/ready answers 200."""
    settings = api_settings(
        db_url, broker_url=f"embedded://127.0.0.1:{broker_port}", webhook_auth="none",
        providers=[{"name": "smsc-main", "type": "smpp", "port": sim.port, "system_id": "smppclient1",
                    "password": "password", **(provider or {})}],
        routes=[{"channel": "smpp", "providers": ["smsc-main"]}], **overrides)
    async with running_app(settings, start_workers=None) as client:
        for _ in range(200):
            if (await client.get("/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError((await client.get("/health/ready")).text)
        yield client


class Posted:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.got = threading.Event()


@contextmanager
def http_receiver() -> Iterator[tuple[str, Posted]]:
    """A loopback HTTP server recording the JSON bodies POSTed to it; yields its URL."""
    posted = Posted()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.bodies.append(orjson.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            posted.got.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/inbound", posted
    finally:
        server.shutdown()
        server.server_close()


async def test_transmitter_receiver_bind_sends_on_one_and_takes_receipts_and_mo_on_the_other(
        sqlite_url: str, sim: SmscSimulator) -> None:
    with http_receiver() as (url, posted):
        async with gateway(sqlite_url, sim, free_port(), provider={"bind": "transmitter_receiver"},
                           inbound_forward_url=url) as client:
            assert sorted(s.mode or "" for s in sim.sessions) == ["receiver", "transmitter"]
            r = await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "over TX"})
            m = await wait_status(client, r.json()["MessageSid"], {"delivered"})
            # The simulator writes receipts only to a receiving bind: this one came over the receiver.
            assert m["Status"] == "delivered" and m["ProviderStatusCode"] == "DELIVRD", m
            await sim.inject_mo("96170999888", "96170000001", "reply over RX")
            assert await asyncio.to_thread(posted.got.wait, 15)
    [mo] = posted.bodies
    assert (mo["Body"], mo["From"]) == ("reply over RX", "+96170999888") and mo["Source"] == "smsc-main"


async def test_inbound_forward_url_gets_each_inbound_sms_once(sqlite_url: str, sim: SmscSimulator) -> None:
    form = {"Body": "Hi", "From": "+96170999888", "To": "+96170000001", "SmsSid": "SMfwd1"}
    with http_receiver() as (url, posted):
        async with gateway(sqlite_url, sim, free_port(), inbound_forward_url=url) as client:
            for _ in range(2):  # the repeat is stored and forwarded once (contract §2)
                r = await client.post("/msg-client/receive", data=form, headers={"X-API-Key": ""})
                assert r.status_code == 200, r.text
            assert await asyncio.to_thread(posted.got.wait, 15)
            await asyncio.sleep(1.0)  # a second POST would have come by now
    [doc] = posted.bodies
    assert (doc["From"], doc["To"], doc["Body"], doc["SmsSid"]) == ("+96170999888", "+96170000001", "Hi", "SMfwd1")
    assert doc["Sid"] == r.json()["Sid"]


async def test_broker_user_and_password_are_the_stomp_login(sqlite_url: str, sim: SmscSimulator) -> None:
    """The embedded broker refuses any other login, so the gateway's publisher (ready, and its report
    arriving) logged in with SMSGW_BROKER_USER/PASSWORD."""
    port = free_port()
    async with gateway(sqlite_url, sim, port, broker_user="smsgw", broker_password="br0ker-pass") as client:
        wrong = stomp.Connection([("127.0.0.1", port)])
        with pytest.raises(stomp.exception.ConnectFailedException):
            await asyncio.to_thread(wrong.connect, "smsgw", "wrong", wait=True)
        consumer = stomp.Connection([("127.0.0.1", port)])
        got: list[Any] = []
        consumer.set_listener("c", type("L", (stomp.ConnectionListener,), {"on_message": lambda s, f: got.append(f)})())
        await asyncio.to_thread(consumer.connect, "smsgw", "br0ker-pass", wait=True)
        consumer.subscribe("/queue/delivery-report", 1)
        sid = (await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "x"})).json()["MessageSid"]
        for _ in range(300):
            if got:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(consumer.disconnect)
    assert [orjson.loads(f.body)["MessageSID"] for f in got] == [sid]


async def test_workers_disabled_runs_the_api_alone(sqlite_url: str, sim: SmscSimulator) -> None:
    port = free_port()
    async with gateway(sqlite_url, sim, port, workers_enabled=False) as client:
        assert client.app.state.ctx.workers is None  # type: ignore[attr-defined]
        r = await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "later"})
        assert r.status_code == 200
        await asyncio.sleep(1.5)  # a dispatcher would have sent it by now
        assert (await client.get(f"/msg-client/messages/{r.json()['MessageSid']}")).json()["Status"] == "queued"
        ready = (await client.get("/health/ready")).json()
        assert sim.stats.binds == 0 and not sim.received
        with pytest.raises(OSError):  # no embedded broker either
            await asyncio.open_connection("127.0.0.1", port)
    assert not any(k.startswith("provider:") for k in ready.get("checks", ready)), ready
