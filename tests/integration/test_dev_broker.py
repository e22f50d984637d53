"""The embedded broker with real stomp.py clients: split frames, receipts, headers kept, competing
consumers, client-ack redelivery; and the publisher end to end through it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import stomp
from support.stomp_consumer import Collector

from app.events.dev_broker import EmbeddedBroker
from app.events.stomp_client import StompConnection
from app.events.stomp_frames import parse_frames


def test_parser_handles_split_frames_and_heartbeats() -> None:
    data = b"\n\nSEND\ndestination:/queue/a\ncontent-length:3\n\na\x00b\x00\r\nSEND\ndestination:/queue/b\n\nhello\x00"
    buf = bytearray()
    got = []
    for i in range(len(data)):
        buf += data[i:i + 1]
        got += parse_frames(buf)
    assert [(c, h["destination"], b) for c, h, b in got] == [("SEND", "/queue/a", b"a\x00b"), ("SEND", "/queue/b", b"hello")]


async def test_stomp_py_round_trip_and_redelivery() -> None:
    broker = EmbeddedBroker(port=0)
    await broker.start()
    try:
        pub = await StompConnection.open(f"stomp://127.0.0.1:{broker.port}", None, None)
        await pub.send_batch([("/queue/delivery-report", {"type": "smpp", "persistent": "true",
                                                          "content-type": "application/json"}, f'{{"n": {i}}}')
                              for i in range(100)])
        assert broker.queue_depth("delivery-report") == 100

        def consume(ack: str) -> tuple[Any, Collector]:
            conn = stomp.Connection([("127.0.0.1", broker.port)])
            listener = Collector()
            conn.set_listener("c", listener)
            conn.connect(wait=True)
            conn.subscribe("/queue/delivery-report", id=1, ack=ack)
            return conn, listener

        c1, l1 = await asyncio.to_thread(consume, "client-individual")
        await asyncio.sleep(0.5)
        assert len(l1.frames) == 100
        h = l1.frames[0].headers
        assert h["type"] == "smpp" and h["content-type"] == "application/json" and "content-length" not in h
        await asyncio.to_thread(c1.disconnect)  # nothing acked: all go back
        await asyncio.sleep(0.2)
        assert broker.queue_depth("delivery-report") == 100
        c2, l2 = await asyncio.to_thread(consume, "auto")
        c3, l3 = await asyncio.to_thread(consume, "auto")
        await asyncio.sleep(0.5)
        bodies = [f.body for f in l2.frames + l3.frames]
        assert len(bodies) == 100 and len(set(bodies)) == 100
        for c in (c2, c3):
            await asyncio.to_thread(c.disconnect)
        await pub.close()
    finally:
        await broker.stop()


async def test_raw_socket_frames_split_at_awkward_points() -> None:
    broker = EmbeddedBroker(port=0)
    await broker.start()
    try:
        def talk() -> bytes:
            s = socket.create_connection(("127.0.0.1", broker.port))
            payload = b"CONNECT\naccept-version:1.2\n\n\x00SEND\ndestination:/queue/x\nreceipt:r1\n\nbody\x00"
            for i in range(0, len(payload), 3):
                s.sendall(payload[i:i + 3])
            data = b""
            while b"receipt-id:r1" not in data:
                data += s.recv(4096)
            s.close()
            return data
        data = await asyncio.to_thread(talk)
        assert data.startswith(b"CONNECTED") and broker.queue_depth("x") == 1
    finally:
        await broker.stop()


async def test_transactions_and_browsing_with_a_selector() -> None:
    broker = EmbeddedBroker(port=0)
    await broker.start()
    try:
        pub = await StompConnection.open(f"stomp://127.0.0.1:{broker.port}", None, None)
        frames = [("/queue/q", {"k": f"report:{i}"}, f'{{"n": {i}}}') for i in range(5)]
        await pub.send_transaction(frames)
        assert broker.queue_depth("q") == 5
        found = await pub.browse("/queue/q", "k IN ('report:1','report:3','report:9')")
        assert sorted(h["k"] for h in found) == ["report:1", "report:3"]
        assert broker.queue_depth("q") == 5  # browsing consumes nothing
        assert [h["k"] for h in await pub.browse("/queue/q", "k = 'report:4'")] == ["report:4"]

        raw = await StompConnection.open(f"stomp://127.0.0.1:{broker.port}", None, None)
        raw._writer.write(b"BEGIN\ntransaction:t\n\n\x00SEND\ndestination:/queue/q\ntransaction:t\n\nx\x00"
                          b"ABORT\ntransaction:t\n\n\x00")
        await raw._writer.drain()
        await raw.close()
        await asyncio.sleep(0.1)
        assert broker.queue_depth("q") == 5  # the aborted SEND never reached the queue
        await pub.close()
    finally:
        await broker.stop()
