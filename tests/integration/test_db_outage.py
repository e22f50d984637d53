"""The gateway against a PostgreSQL that goes away: a cluster of this module's own (tests/support),
run with `synchronous_commit=off` server-side as many clusters are, so that only the gateway's own
`SET LOCAL synchronous_commit = on` stands between a 200 and a lost message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import asyncpg
import orjson
import pytest
from conftest import API_KEY
from support.gateway import Gateway, KeepAliveClient
from support.pg_cluster import PrivateCluster
from support.servers import free_port

from app.db.migrate import upgrade_to_head

WIRE_ERRORS = (OSError, asyncio.IncompleteReadError, TimeoutError)


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[PrivateCluster]:
    # The WAL writer flushes asynchronous commits every wal_writer_delay: at its maximum (10 s) a crash
    # loses whatever was committed without a flush in between, as a busy server's last commits would be.
    pg = PrivateCluster({"synchronous_commit": "off", "wal_writer_delay": "10000ms"})
    await pg.init()
    await pg.start()
    conn = await asyncpg.connect(pg.admin_url.replace("+asyncpg", ""))
    await conn.execute("CREATE DATABASE smsgw")
    await conn.close()
    await asyncio.to_thread(upgrade_to_head, pg.admin_url.rsplit("/", 1)[0] + "/smsgw")
    conn = await asyncpg.connect(pg.admin_url.replace("+asyncpg", ""))
    await conn.execute("CHECKPOINT")  # the schema itself was committed asynchronously: a crash must not take it
    await conn.close()
    yield pg
    await pg.destroy()


def gateway_env(pg: PrivateCluster) -> dict[str, str]:
    return {
        "SMSGW_DATABASE_URL": pg.admin_url.rsplit("/", 1)[0] + "/smsgw", "SMSGW_API_KEYS": API_KEY,
        "SMSGW_WORKERS_ENABLED": "false", "SMSGW_WEBHOOK_AUTH": "token:outage", "SMSGW_LOG_LEVEL": "INFO",
        "SMSGW_DATABASE_POOL_SIZE": "5",
        "SMSGW_PROVIDERS": orjson.dumps([{"name": "smsc-main", "type": "smpp", "system_id": "smppclient1",
                                          "password": "password"}]).decode(),
        "SMSGW_ROUTES": orjson.dumps([{"channel": "smpp", "providers": ["smsc-main"]}]).decode(),
    }


async def stored_sids(pg: PrivateCluster) -> set[str]:
    conn = await asyncpg.connect(pg.admin_url.replace("+asyncpg", "").rsplit("/", 1)[0] + "/smsgw")
    try:
        return {r["sid"] for r in await conn.fetch("SELECT sid FROM message")}
    finally:
        await conn.close()


def send_body(to: str) -> bytes:
    return orjson.dumps({"To": to, "Body": "outage test"})


async def test_gateway_started_without_its_database_answers_503_then_becomes_ready(cluster: PrivateCluster) -> None:
    await cluster.stop()
    gw = Gateway(gateway_env(cluster))
    try:
        await gw.wait_listening()
        client = KeepAliveClient(gw.port, {"X-API-Key": API_KEY})
        ready = await client.request("GET", "/health/ready")
        assert ready.status == 503
        assert ready.json()["checks"]["startup"]["ok"] is False
        sent = await client.request("POST", "/msg-client/send", send_body("+15550100001"))
        assert sent.status == 503 and int(sent.headers["retry-after"]) >= 1
        assert sent.json()["error"]["code"] == "unavailable"
        assert client.connections == 1  # the 503s kept the connection open
        await asyncio.sleep(1.5)  # a few retries against nothing
        assert gw.alive()

        await cluster.start()
        up = time.monotonic()
        while (probe := await client.request("GET", "/health/ready")).status != 200:
            assert time.monotonic() - up < 15, f"not ready 15 s after the database came back: {probe.body!r}"
            await asyncio.sleep(0.2)
        sent = await client.request("POST", "/msg-client/send", send_body("+15550100002"))
        assert sent.status == 200, sent.body
        assert sent.json()["MessageSid"] in await stored_sids(cluster)
        await client.close()
    finally:
        await gw.stop()


async def stored_inbound(pg: PrivateCluster) -> set[str]:
    conn = await asyncpg.connect(pg.admin_url.replace("+asyncpg", "").rsplit("/", 1)[0] + "/smsgw")
    try:
        return {r["upstream_sid"] for r in await conn.fetch("SELECT upstream_sid FROM inbound_message")}
    finally:
        await conn.close()


async def test_kill_9_of_the_postmaster_loses_nothing_answered_200(cluster: PrivateCluster) -> None:
    """Neither a message a client got 200 for, nor an inbound SMS an upstream's webhook got 200 for
    (that upstream will not send it again)."""
    gw = Gateway(gateway_env(cluster))
    accepted: list[str] = []
    received: list[str] = []
    stop = asyncio.Event()

    async def upstream(i: int) -> None:
        c = KeepAliveClient(gw.port, {"X-Webhook-Token": "outage"})
        n = 0
        while not stop.is_set():
            n += 1
            sms_sid = f"SM{i:02d}{n:06d}"
            form = urlencode({"SmsSid": sms_sid, "From": "+15557770001", "To": "+15557770002", "Body": "mo"})
            try:
                r = await c.request("POST", "/msg-client/receive", form.encode(), timeout=15,
                                    content_type="application/x-www-form-urlencoded")
            except WIRE_ERRORS:
                await c.close()
                await asyncio.sleep(0.05)
                continue
            if r.status == 200:
                received.append(sms_sid)
        await c.close()

    async def client(i: int) -> None:
        c = KeepAliveClient(gw.port, {"X-API-Key": API_KEY})
        n = 0
        while not stop.is_set():
            n += 1
            try:
                r = await c.request("POST", "/msg-client/send", send_body(f"+1555{i:02d}{n:05d}"), timeout=15)
            except WIRE_ERRORS:
                await c.close()
                await asyncio.sleep(0.05)
                continue
            if r.status == 200:
                accepted.append(str(r.json()["MessageSid"]))
        await c.close()

    try:
        await gw.wait_listening()
        tasks = [asyncio.create_task(client(i)) for i in range(12)]
        tasks += [asyncio.create_task(upstream(i)) for i in range(6)]
        await asyncio.sleep(3.0)
        await cluster.kill9()  # mid-load: commits are in flight and answers on their way
        before_restart = len(accepted), len(received)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        await gw.stop()
    await cluster.start()  # crash recovery replays what reached the WAL
    lost = set(accepted) - await stored_sids(cluster)
    lost_inbound = set(received) - await stored_inbound(cluster)
    assert before_restart[0] > 30 and before_restart[1] > 30, f"too little load to mean anything: {before_restart}"
    assert not lost, f"{len(lost)} of {len(accepted)} messages answered 200 are gone"
    assert not lost_inbound, f"{len(lost_inbound)} of {len(received)} inbound SMS answered 200 are gone"


async def test_every_client_gets_its_503_during_an_outage_on_a_connection_that_stays_open(
        cluster: PrivateCluster) -> None:
    gw = Gateway(gateway_env(cluster))
    clients = [KeepAliveClient(gw.port, {"X-API-Key": API_KEY}) for _ in range(100)]
    try:
        await gw.wait_listening()
        warm = await asyncio.gather(*(c.request("POST", "/msg-client/send", send_body(f"+155501{i:05d}"))
                                      for i, c in enumerate(clients)))
        assert {r.status for r in warm} == {200}
        await cluster.stop()
        outcomes: list[str] = []

        async def twice(i: int, c: KeepAliveClient) -> None:
            for n in range(2):  # the second request proves the connection survived the first 503
                try:
                    r = await c.request("POST", "/msg-client/send", send_body(f"+155502{i:03d}{n:02d}"))
                    outcomes.append(f"{r.status} retry-after={'retry-after' in r.headers}")
                except WIRE_ERRORS as exc:
                    outcomes.append(type(exc).__name__)
                    await c.close()

        await asyncio.gather(*(twice(i, c) for i, c in enumerate(clients)))
        counts = {o: outcomes.count(o) for o in set(outcomes)}
        assert counts == {"503 retry-after=True": 200}, counts
        assert all(c.connections == 1 for c in clients), "a connection was closed under a client"
        assert "Exception in ASGI application" not in gw.output()
    finally:
        for c in clients:
            await c.close()
        await gw.stop()
        if cluster.postmaster_pid() is None:
            await cluster.start()


async def test_gateway_started_while_every_connection_slot_is_taken_waits_then_becomes_ready(
        cluster: PrivateCluster) -> None:
    dsn = cluster.admin_url.replace("+asyncpg", "")
    hogs: list[asyncpg.Connection] = []
    while True:  # every slot, the superuser's reserved ones included
        try:
            hogs.append(await asyncpg.connect(dsn))
        except asyncpg.TooManyConnectionsError:
            break
    gw = Gateway(gateway_env(cluster))
    try:
        await gw.wait_listening()
        client = KeepAliveClient(gw.port, {"X-API-Key": API_KEY})
        sent = await client.request("POST", "/msg-client/send", send_body("+15550100003"))
        assert sent.status == 503 and "retry-after" in sent.headers
        ready = await client.request("GET", "/health/ready")
        assert ready.status == 503 and "too many clients" in str(ready.json()["checks"]["startup"]["error"])

        for hog in hogs:
            await hog.close()
        hogs.clear()
        up = time.monotonic()
        while (await client.request("GET", "/health/ready")).status != 200:
            assert time.monotonic() - up < 15, "not ready 15 s after connection slots were freed"
            await asyncio.sleep(0.2)
        assert (await client.request("POST", "/msg-client/send", send_body("+15550100004"))).status == 200
        assert client.connections == 1
        await client.close()
    finally:
        for hog in hogs:
            await hog.close()
        await gw.stop()


async def test_kill_9_loses_no_mo_the_receipt_sink_returned_for(cluster: PrivateCluster) -> None:
    """`DbReportSink` returning is what lets the SMPP provider send deliver_sm_resp: after that the
    SMSC will not send the MO again, so it must be on disk."""
    from app.config import Settings
    from app.db.engine import create_engine, session_factory
    from app.domain.messages import InboundSms
    from app.metrics import Metrics
    from app.services.sink import DbReportSink

    url = cluster.admin_url.rsplit("/", 1)[0] + "/smsgw"
    engine = create_engine(url, pool_size=8)
    sink = DbReportSink(session_factory(engine), Settings(database_url=url), Metrics())
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def smsc(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            upstream_id = f"mo-{i:02d}-{n:06d}"
            try:
                await sink.inbound(InboundSms(source="smsc-main", upstream_sid=upstream_id, from_number="+15557770003",
                                              to_number="+15557770004", body="mo over smpp"))
            except Exception:  # the database is gone: no deliver_sm_resp, the SMSC would retry
                await asyncio.sleep(0.05)
                continue
            acknowledged.append(upstream_id)

    try:
        tasks = [asyncio.create_task(smsc(i)) for i in range(8)]
        await asyncio.sleep(2.0)
        await cluster.kill9()
        before_restart = len(acknowledged)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        await engine.dispose()
    await cluster.start()
    lost = set(acknowledged) - await stored_inbound(cluster)
    assert before_restart > 30, f"too little load to mean anything: {before_restart}"
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged MOs are gone"


async def test_workers_start_once_the_database_is_there(cluster: PrivateCluster) -> None:
    await cluster.stop()
    broker_port = free_port()
    env = {**gateway_env(cluster), "SMSGW_WORKERS_ENABLED": "true", "SMSGW_PROVIDERS": "[]", "SMSGW_ROUTES": "[]",
           "SMSGW_BROKER_URL": f"embedded://127.0.0.1:{broker_port}"}
    gw = Gateway(env)
    try:
        await gw.wait_listening()
        client = KeepAliveClient(gw.port)
        waiting = await client.request("GET", "/health/ready")
        assert waiting.status == 503 and "broker" not in waiting.json()["checks"]
        with pytest.raises(OSError):  # the workers (here: the embedded broker) wait for the database
            await asyncio.open_connection("127.0.0.1", broker_port)

        await cluster.start()
        up = time.monotonic()
        while (probe := await client.request("GET", "/health/ready")).status != 200:
            assert time.monotonic() - up < 15, f"not ready 15 s after the database came back: {probe.body!r}"
            await asyncio.sleep(0.2)
        assert probe.json()["checks"]["broker"]["connected"] is True
        await client.close()
    finally:
        await gw.stop()
