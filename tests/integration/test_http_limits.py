"""`smsgw serve` over real TCP: the request head is bounded in size, count and time, an unexpected
error (500) is answered on a keep-alive connection that stays open, and a response's head and body go
out together without holding back a 100 Continue or an answer to HEAD."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import uvicorn
from conftest import API_KEY, api_settings
from support.gateway import Gateway, KeepAliveClient
from support.servers import free_port
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from app.api.http_limits import BoundedHttpToolsProtocol, HeadLimits

HEADER_TIMEOUT = 1.5


@pytest.fixture(scope="module")
async def gateway(module_db_url: str) -> AsyncIterator[Gateway]:
    gw = Gateway({"SMSGW_DATABASE_URL": module_db_url, "SMSGW_API_KEYS": API_KEY, "SMSGW_WORKERS_ENABLED": "false",
                  "SMSGW_WEBHOOK_AUTH": "token:limits", "SMSGW_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)})
    await gw.wait_listening()
    yield gw
    await gw.stop()


async def exchange(port: int, chunks: list[bytes], pause: float = 0.0) -> tuple[bytes, float]:
    """Write `chunks` (with `pause` between them) while reading; returns what the server answered before
    it closed, and when (seconds after connecting). Stops writing once an answer has come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return await _trickle(reader, writer, chunks, pause)


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: list[bytes],
                   pause: float) -> tuple[bytes, float]:
    """`exchange` on a connection already open: the time counts from now."""
    started = time.monotonic()
    answer = bytearray()

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                answer.extend(data)

    reading = asyncio.create_task(read())
    with contextlib.suppress(ConnectionError):
        for chunk in chunks:
            if answer or reading.done():
                break
            writer.write(chunk)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
    await asyncio.wait_for(reading, 10)
    elapsed = time.monotonic() - started
    writer.close()
    return bytes(answer), elapsed


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def test_a_1_mb_header_is_refused_with_431(gateway: Gateway) -> None:
    head = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    answer, _ = await exchange(gateway.port, [head] + [b"a" * 16384] * 64 + [b"\r\n\r\n"])
    assert status_of(answer) == 431, answer[:200]
    body = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "headers_too_large"


async def test_a_head_just_over_the_size_limit_is_refused_and_one_under_it_is_served(gateway: Gateway) -> None:
    over = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(17)) + b"\r\n"
    assert status_of((await exchange(gateway.port, [over]))[0]) == 431
    under = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(14)) + b"\r\n"
    assert status_of((await exchange(gateway.port, [under]))[0]) == 200


async def test_answers_do_not_name_the_server_software(gateway: Gateway) -> None:
    client = KeepAliveClient(gateway.port)
    try:
        live = await client.request("GET", "/health/live")
        refused = await client.request("POST", "/msg-client/send", b"{}")
    finally:
        await client.close()
    assert (live.status, refused.status) == (200, 401)
    assert "server" not in live.headers and "server" not in refused.headers
    assert "date" in live.headers  # the date header stays (RFC 9110 §6.6.1: an origin server with a clock sends it)


async def test_5000_headers_are_refused_with_431_and_90_are_served(gateway: Gateway) -> None:
    many = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"
    answer, _ = await exchange(gateway.port, [many])
    assert status_of(answer) == 431 and b"more than 100 request headers" in answer
    fine = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(90)) + b"\r\n"
    assert status_of((await exchange(gateway.port, [fine]))[0]) == 200


async def test_headers_trickled_slowly_are_cut_off_with_408(gateway: Gateway) -> None:
    trickle = [b"GET /health/live HTTP/1.1\r\n"] + [b"X-Slow-%d: v\r\n" % i for i in range(40)]
    answer, elapsed = await exchange(gateway.port, trickle, pause=0.3)  # 12 s if never cut off
    assert status_of(answer) == 408, answer[:200]
    assert HEADER_TIMEOUT - 0.2 <= elapsed <= HEADER_TIMEOUT + 1.5


async def test_the_next_head_on_a_keep_alive_connection_has_the_timeout_too(gateway: Gateway) -> None:
    """The head timer starts with each request's first byte, not only the connection's: a second request
    trickled on a connection whose first was served is cut off all the same."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert status_of(head) == 200
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    trickle = [b"GET /health/live HTTP/1.1\r\n"] + [b"X-Slow-%d: v\r\n" % i for i in range(40)]
    answer, elapsed = await _trickle(reader, writer, trickle, pause=0.3)  # 12 s if never cut off
    assert status_of(answer) == 408, answer[:200]
    assert HEADER_TIMEOUT - 0.2 <= elapsed <= HEADER_TIMEOUT + 1.5


async def test_a_connection_that_sends_nothing_is_closed(gateway: Gateway) -> None:
    answer, elapsed = await exchange(gateway.port, [])
    assert answer == b"" and elapsed <= HEADER_TIMEOUT + 1.5


async def test_a_slow_body_is_not_a_slow_head(gateway: Gateway) -> None:
    """The head timeout bounds the headers only: a request whose headers came at once is served even
    when its body takes longer than the head timeout."""
    body = orjson.dumps({"To": "not-a-number", "Body": "x"})
    head = (f"POST /msg-client/send HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    answer, _ = await exchange(gateway.port, [head, body[:5], body[5:]], pause=HEADER_TIMEOUT)
    assert status_of(answer) == 400, answer[:300]  # the body's own error, not a 408


async def test_head_and_100_continue_are_answered_on_one_keep_alive_connection(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        # An answer to HEAD has a head and no body: it must still be sent, and the connection go on.
        writer.write(b"HEAD /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert status_of(head) in (200, 405), head
        # Expect: 100-continue: the interim answer comes before the body is sent, then the response.
        body = orjson.dumps({"To": "+14155550132", "Body": "continue"})
        writer.write(b"POST /msg-client/send HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                     % (API_KEY.encode(), len(body)))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert status_of(head) == 200, head
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        answer = orjson.loads(await asyncio.wait_for(reader.readexactly(length), 5))
        assert answer["To"] == "+14155550132" and answer["Status"] == "queued"
    finally:
        writer.close()


async def test_a_500_is_answered_and_the_keep_alive_connection_survives(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.api.send as send_module
    from app.main import create_app

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(send_module, "accept", boom)
    monkeypatch.setattr(BoundedHttpToolsProtocol, "limits", HeadLimits(16384, 100, 10.0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(api_settings(db_url), start_workers=False), host="127.0.0.1",
                                           port=port, http=BoundedHttpToolsProtocol, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        client = KeepAliveClient(port, {"X-API-Key": API_KEY})
        for _ in range(3):
            r = await client.request("POST", "/msg-client/send", orjson.dumps({"To": "+14155550131", "Body": "x"}))
            assert r.status == 500 and b"secret internals" not in r.body
        ok = await client.request("GET", "/health/live")
        assert ok.status == 200 and client.connections == 1
        await client.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def test_a_finished_request_leaves_nothing_for_the_garbage_collector(db_url: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A request's cycle (its scope, headers, event and the transport wrapping them) is freed when its
    task ends, not later by the collector: with the collector off, 30 requests on one connection leave at
    most the cycle the connection still holds (the last one)."""
    from app.main import create_app

    monkeypatch.setattr(BoundedHttpToolsProtocol, "limits", HeadLimits(16384, 100, 10.0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(api_settings(db_url), start_workers=False), host="127.0.0.1",
                                           port=port, http=BoundedHttpToolsProtocol, log_config=None))
    serving = asyncio.create_task(server.serve())
    client = KeepAliveClient(port, {"X-API-Key": API_KEY})
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        assert (await client.request("GET", "/health/live")).status == 200
        gc.collect()
        gc.disable()
        try:
            for i in range(15):
                sent = await client.request("POST", "/msg-client/send",
                                            orjson.dumps({"To": f"+1415555{i:04d}", "Body": "no garbage"}))
                assert sent.status == 200, sent.body
                assert (await client.request("GET", "/health/live")).status == 200
            alive = sum(1 for o in gc.get_objects() if isinstance(o, RequestResponseCycle))
        finally:
            gc.enable()
        assert alive <= 1 and client.connections == 1
    finally:
        await client.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
