"""The providers' HTTP/1.1 client (app/providers/http/wire.py) against raw loopback servers: keep-alive
reuse, chunked and close-delimited bodies, the reply size limit, and the errors it raises before and after
sending."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from app.config import HttpProviderConfig
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid
from app.providers.base import OutboundMessage, UnknownOutcomeError
from app.providers.http import wire
from app.providers.http.commpeak import CommpeakProvider

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


async def _requests(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        yield head + (await reader.readexactly(length) if length else b"")


async def test_keep_alive_connection_is_reused_and_the_request_is_what_the_api_wants() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for request in _requests(reader):
            seen.append(request)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: 2\r\n\r\nok")

    server, url, connections = await _serve(handler)
    client = wire.WireClient(timeout=2.0, max_connections=4)
    for _ in range(5):
        reply = await client.request("GET", url + "/api", params={"message": "a b&c", "dnis": "+961"})
        assert (reply.status_code, reply.text) == (200, "ok")
    form = await client.request("POST", url + "/api", data={"Body": "é ü"}, auth=("AC1", "tok"))
    assert form.status_code == 200 and len(connections) == 1
    assert seen[0].startswith(b"GET /api?message=a%20b%26c&dnis=%2B961 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert b"Content-Type: application/x-www-form-urlencoded" in seen[-1]
    assert b"Authorization: Basic QUMxOnRvaw==" in seen[-1] and seen[-1].endswith(b"\r\n\r\nBody=%C3%A9+%C3%BC")
    await client.aclose()
    server.close()


@pytest.mark.parametrize(("answer", "body"), [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n1701\r\n6;x=y\r\n|96170\r\n0\r\n\r\n", "1701|96170"),
    (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nResponse: 2541524", "Response: 2541524"),
    (b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 16\r\n\r\nUnknown username", "Unknown username"),
])
async def test_chunked_and_close_delimited_bodies(answer: bytes, body: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in _requests(reader):
            writer.write(answer)
            if b"chunked" not in answer:
                await writer.drain()
                return

    server, url, connections = await _serve(handler)
    client = wire.WireClient(timeout=2.0, max_connections=2)
    assert (await client.request("GET", url)).text == body
    assert (await client.request("GET", url)).text == body
    assert len(connections) == (1 if b"chunked" in answer else 2)  # a closing server gets a new connection
    await client.aclose()
    server.close()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in _requests(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return  # closes after one answer without saying so

    server, url, connections = await _serve(handler)
    client = wire.WireClient(timeout=2.0, max_connections=2)
    await client.request("GET", url)
    await asyncio.sleep(0.05)
    assert (await client.request("GET", url)).status_code == 200 and len(connections) == 2
    await client.aclose()
    server.close()


async def test_errors_before_and_after_the_request_left() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    client = wire.WireClient(timeout=0.3, max_connections=1)
    server, url, _ = await _serve(silent)
    with pytest.raises(wire.ReplyTimeout):
        await client.request("GET", url)
    server.close()
    server, url, _ = await _serve(hangs_up)
    with pytest.raises(wire.ReplyBroken):
        await client.request("GET", url)
    server.close()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(wire.ConnectFailed):
        await client.request("GET", f"http://127.0.0.1:{port}/")
    for bad in ("ftp://127.0.0.1/", "http://127.0.0.1:99999/", "nohost"):
        with pytest.raises(wire.BadUrl):
            await client.request("GET", bad)
    await client.aclose()


async def test_a_reused_connection_closed_before_any_answer_is_sent_again_once_on_a_new_one() -> None:
    log: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_connection = not log
        async for _ in _requests(reader):
            if first_connection and log == ["answered"]:
                log.append("closed without a byte")  # the idle-timeout race of a kept-alive connection
                return
            log.append("answered")
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server, url, connections = await _serve(handler)
    client = wire.WireClient(timeout=2.0, max_connections=1)
    assert (await client.request("GET", url)).text == "ok"  # the interim 100 answer is skipped
    assert (await client.request("GET", url)).text == "ok"
    assert log == ["answered", "closed without a byte", "answered"] and len(connections) == 2
    await client.aclose()
    server.close()


async def test_a_new_connection_closed_before_any_answer_is_not_sent_again() -> None:
    requests: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in _requests(reader):
            requests.append(1)
            return

    server, url, _ = await _serve(handler)
    client = wire.WireClient(timeout=2.0, max_connections=1)
    with pytest.raises(wire.ReplyBroken):
        await client.request("GET", url)
    assert requests == [1]
    await client.aclose()
    server.close()


async def test_https_with_certificate_checks(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    openssl = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days",
        "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await openssl.wait() == 0
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in _requests(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n1701")

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/bulksms"
    trusting = wire.WireClient(timeout=2.0, max_connections=1, ssl_context=ssl.create_default_context(cafile=cert))
    assert (await trusting.request("GET", url)).text == "1701"
    with pytest.raises(wire.ConnectFailed):  # the system's CAs do not know this certificate
        await wire.WireClient(timeout=2.0, max_connections=1).request("GET", url)
    await trusting.aclose()
    server.close()


def _chunked(body: bytes, size: int = 65536) -> bytes:
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def _answers(body: bytes) -> dict[str, bytes]:
    """The same body framed each way an HTTP/1.1 reply may frame it."""
    return {
        "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(body),
        "close-delimited": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body,
    }


async def _answering(answer: bytes) -> tuple[asyncio.Server, str, list[int]]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    return await _serve(handler)


@pytest.mark.parametrize("framing", ["content-length", "chunked", "close-delimited"])
async def test_a_reply_body_over_the_limit_is_refused_however_it_is_framed(framing: str) -> None:
    limit = 64 * 1024
    client = wire.WireClient(timeout=2.0, max_connections=1, max_body=limit)
    server, url, _ = await _answering(_answers(b"x" * (limit + 1))[framing])
    with pytest.raises(wire.ReplyTooLarge, match=f"over {limit} bytes"):
        await client.request("GET", url)
    server.close()
    server, url, _ = await _answering(_answers(b"y" * limit)[framing])  # exactly the limit: read whole
    assert (await client.request("GET", url)).content == b"y" * limit
    server.close()
    await client.aclose()


async def test_the_default_limit_is_one_mebibyte_and_an_announced_length_is_refused_unread() -> None:
    sent: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (wire.MAX_BODY + 1))
        for _ in range(64):  # keeps sending until the client hangs up: it must not wait for the body
            writer.write(b"z" * 65536)
            await writer.drain()
            sent.append(1)
            await asyncio.sleep(0.05)

    assert wire.MAX_BODY == 1024 * 1024
    server, url, _ = await _serve(handler)
    client = wire.WireClient(timeout=10.0, max_connections=1)
    with pytest.raises(wire.ReplyTooLarge):
        await client.request("GET", url)
    assert len(sent) < 16  # refused on the head, not after reading (or timing out on) 1 MiB of body
    server.close()
    await client.aclose()


async def test_an_oversized_submit_answer_is_an_unknown_outcome_never_a_retry() -> None:
    """The submit left: the provider may have the message, so the dispatcher must not resend it blindly."""
    server, url, _ = await _answering(_answers(b"Response: 1|" + b"9" * 4096)["chunked"])
    cfg = HttpProviderConfig(name="cp", dialect="commpeak", url=url + "/api", username="u", password="p",
                             timeout=2.0, max_reply_bytes=1024)
    provider = CommpeakProvider(cfg)
    await provider.start(None)  # type: ignore[arg-type]
    message = OutboundMessage(sid=MessageSid("SM1"), to="+96170123456", sender="Acme", body="hi",
                              encoding=Encoding.GSM7, long_message_mode=LongMessageMode.SPLIT)
    with pytest.raises(UnknownOutcomeError):
        await provider.submit(message)
    await provider.stop()
    server.close()
