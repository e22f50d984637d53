"""A lean HTTP/1.1 client for the provider APIs: keep-alive connections on asyncio streams.

Why not httpx: measured here, httpx 0.28 costs 1.6 ms of CPU per request at one connection and
4 ms at 64 concurrent ones (its pool), which bounded `e2e-http` (a submit and a status query per
message) at about 100 msg/s per core; this client costs 0.15 ms. These APIs need little of HTTP:
GET with a query string, POST of a form, basic auth, TLS, `Content-Length` or chunked replies.

Errors come out as the transport errors below; common.py maps them to Retryable / Route /
UnknownOutcome in one table:

    WireError
    ├── ConnectFailed    nothing was sent (refused, connect timeout, TLS handshake, no free connection)
    ├── BadUrl           the configured URL cannot be requested
    ├── ReplyTimeout     the request left and no (complete) answer came in time
    └── ReplyBroken      the connection dropped or the answer was not HTTP after the request left
        └── ReplyTooLarge    the answer's body is over `max_body`: not read further, the connection dropped

A provider's answer is a few hundred bytes; one over `max_body` (1 MiB by default, the provider's
`max_reply_bytes`) is a broken or hostile upstream, and is refused before it is buffered, whether its
length is announced (`Content-Length`), chunked or delimited by the end of the connection. The request
had left, so for a submit it is an unknown outcome (never resent blindly), like a dropped connection.

A kept-alive connection the server closes just as it is reused (its idle timeout) ends before a
single byte of answer: the request goes again, once, on a new connection. Connections idle longer
than IDLE_EXPIRY are not reused at all, which makes that race rare.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

IDLE_EXPIRY = 4.0  # seconds: below the 5 s idle timeout of uvicorn/Apache, so a reused connection is alive
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024  # bytes of a reply body, unless the client is given another max_body


class WireError(Exception):
    pass


class ConnectFailed(WireError):
    pass


class BadUrl(WireError):
    pass


class ReplyTimeout(WireError):
    pass


class ReplyBroken(WireError):
    pass


class ReplyTooLarge(ReplyBroken):
    pass


class _NothingCameBack(Exception):
    """The connection ended before a single byte of the answer (see WireClient.request)."""


@dataclass(slots=True)
class Reply:
    """An HTTP answer: the bits of httpx.Response the dialects read."""

    status_code: int
    reason_phrase: str
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def text(self) -> str:
        ctype = self.headers.get("content-type", "")
        charset = "utf-8"
        if "charset=" in ctype:
            charset = ctype.split("charset=", 1)[1].split(";", 1)[0].strip().strip('"') or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = field(default_factory=time.monotonic)

    def usable(self) -> bool:
        return (not self.reader.at_eof() and not self.writer.is_closing()
                and time.monotonic() - self.idle_since < IDLE_EXPIRY)

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True, slots=True)
class _Origin:
    tls: bool
    host: str
    port: int


def _origin_and_target(url: str) -> tuple[_Origin, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(str(exc)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUrl(f"not an http(s) URL: {parts.scheme}://")
    tls = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Origin(tls, parts.hostname, port or (443 if tls else 80)), target


class WireClient:
    """Pooled keep-alive connections (at most `max_connections` per origin), timeouts in seconds, reply
    bodies of at most `max_body` bytes."""

    def __init__(self, timeout: float, max_connections: int, connect_timeout: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None, max_body: int = MAX_BODY) -> None:
        self._timeout = timeout
        self._max_body = max_body
        self._connect_timeout = min(timeout, connect_timeout)
        self._max = max_connections
        self._idle: dict[_Origin, collections.deque[_Conn]] = {}
        self._slots: dict[_Origin, asyncio.Semaphore] = {}
        self._ssl = ssl_context  # None: the system's CAs, made on the first https request

    async def request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                      data: dict[str, str] | None = None, auth: tuple[str, str] | None = None,
                      headers: dict[str, str] | None = None) -> Reply:
        origin, target = _origin_and_target(url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params, quote_via=quote)
        body = urlencode(data).encode() if data is not None else b""
        head = [f"{method} {target} HTTP/1.1", f"Host: {origin.host}", "Accept-Encoding: identity"]
        if data is not None:
            head.append("Content-Type: application/x-www-form-urlencoded")
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        if auth is not None:
            head.append("Authorization: Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        head.extend(f"{k}: {v}" for k, v in (headers or {}).items())
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        slots = self._slots.setdefault(origin, asyncio.Semaphore(self._max))
        try:
            async with asyncio.timeout(self._connect_timeout):
                await slots.acquire()
        except TimeoutError:
            raise ConnectFailed("no free connection (pool timeout)") from None
        try:
            conn, reused = await self._connection(origin)
            try:
                reply, keep = await self._exchange(conn, raw, method)
            except _NothingCameBack:
                if not reused:
                    raise ReplyBroken("connection closed before any answer") from None
                # A kept-alive connection the server closed as we reused it: it never read this request
                # (a server that had would answer), so it goes again, once, on a new connection.
                conn, _ = await self._connection(origin, fresh=True)
                try:
                    reply, keep = await self._exchange(conn, raw, method)
                except _NothingCameBack:
                    raise ReplyBroken("connection closed before any answer") from None
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(origin, collections.deque()).append(conn)
            else:
                conn.close()
            return reply
        finally:
            slots.release()

    async def _connection(self, origin: _Origin, fresh: bool = False) -> tuple[_Conn, bool]:
        """A connection to `origin` and whether it is a kept-alive one."""
        idle = self._idle.get(origin)
        while idle and not fresh:
            conn = idle.pop()  # the most recently used: the likeliest to be alive
            if conn.usable():
                return conn, True
            conn.close()
        if origin.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=self._ssl if origin.tls else None, limit=2**20)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectFailed(type(exc).__name__) from None
        return _Conn(reader, writer), False

    async def _exchange(self, conn: _Conn, raw: bytes, method: str) -> tuple[Reply, bool]:
        try:
            async with asyncio.timeout(self._timeout):
                conn.writer.write(raw)
                return await _read_reply(conn.reader, method, self._max_body)
        except TimeoutError:
            conn.close()
            raise ReplyTimeout("no answer in time") from None
        except _NothingCameBack:
            conn.close()
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            raise ReplyBroken(type(exc).__name__) from None
        except BaseException:  # cancelled mid-exchange: the connection is in an unknown state
            conn.close()
            raise

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


async def _read_reply(reader: asyncio.StreamReader, method: str, max_body: int) -> tuple[Reply, bool]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        raise _NothingCameBack from None
    except (ConnectionResetError, BrokenPipeError):
        raise _NothingCameBack from None
    while head.startswith(b"HTTP/1.1 1") and not head.startswith(b"HTTP/1.1 101"):
        head = await reader.readuntil(b"\r\n\r\n")  # an interim answer (100 Continue): the real one follows
    if len(head) > MAX_HEAD:
        raise ValueError("reply head too large")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.x reply")
    code, _, reason = rest.partition(" ")
    status = int(code)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        content = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        content = await _read_chunked(reader, max_body)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length < 0:
            raise ValueError("negative Content-Length")
        _within(length, max_body)  # refused before a byte of it is read
        content = await reader.readexactly(length)
    else:
        content, keep = await _read_to_end(reader, max_body), False  # delimited by the end of the connection
    return Reply(status, reason, headers, content), keep


def _within(size: int, max_body: int) -> None:
    if size > max_body:
        raise ReplyTooLarge(f"reply body over {max_body} bytes")


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size < 0:
            raise ValueError("negative chunk size")
        if size == 0:
            trailers = 0
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                trailers += len(line)  # endless trailer lines count against the head's limit
                if trailers > MAX_HEAD:
                    raise ValueError("reply trailers too large")
            return bytes(out)
        _within(len(out) + size, max_body)  # the sum of the chunks, checked before each is read
        out += await reader.readexactly(size)
        await reader.readexactly(2)


async def _read_to_end(reader: asyncio.StreamReader, max_body: int) -> bytes:
    out = bytearray()
    while chunk := await reader.read(65536):
        out += chunk
        _within(len(out), max_body)
    return bytes(out)
