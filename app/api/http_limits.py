"""The HTTP/1.1 server protocol `smsgw serve` runs: uvicorn's httptools protocol with bounds on the
request head, which uvicorn does not enforce itself.

- `SMSGW_MAX_HEADER_BYTES` (request line + headers) and `SMSGW_MAX_HEADERS` (count): over either, 431
  and the connection is closed. The raw bytes of a head still arriving are counted too, so a client
  cannot make the parser buffer a megabyte-long header before it is refused.
- `SMSGW_HEADER_TIMEOUT_SECONDS`: the whole head must arrive within this long of the connection opening
  or of the request's first byte (a slowloris client trickling a header every few seconds is cut off
  with 408); an idle keep-alive connection is closed after uvicorn's `timeout_keep_alive`.

A response also goes out as one write where uvicorn makes two (its head, then its body): `_OneWrite`
holds the head until the body comes. Two writes are two system calls and two TCP segments, and a client
that reads the head first wakes twice for one answer (bench.run e2e-smpp-single: 64 connections, one
request a message).

The limits are per process: `serve` sets them from its settings, a uvicorn worker process (`--workers
N`) reads them from the same environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from app.api.errors import error_body
from app.config import Settings

# What one read may add beyond the head (the start of a body sent along with it).
_READ_SLACK = 256 * 1024
_LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int
    max_count: int
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadLimits:
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout_seconds)


def _nothing() -> None:
    pass


class _OneWrite:
    """The transport uvicorn's request cycle writes its response to: the head (written once the response
    has started) waits for the next write, the body's, and goes with it; a response whose body is never
    written (an answer to HEAD) sends it when it completes, and closing sends it first. What the cycle
    writes before its response starts (`100 Continue`) goes at once.

    The cycle holds this as its transport and this holds the cycle: a reference cycle, which only the
    garbage collector would free, with the request's scope, headers and event in it. Once the response
    is complete the references back are dropped, so the cycle and all it holds go when its task ends."""

    __slots__ = ("_completed", "_cycle", "_head", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle: RequestResponseCycle | None = cycle
        self._head: bytes | None = None
        self._held = False  # the head has been held (once a response)
        self._completed: Callable[[], None] = cycle.on_response
        cycle.on_response = self._on_response

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._held and self._cycle is not None and self._cycle.response_started:
            self._head, self._held = data, True
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def _on_response(self) -> None:
        self.flush()
        completed, self._completed, self._cycle = self._completed, _nothing, None
        completed()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a head we refuse."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HeadLimits | None] = None

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if BoundedHttpToolsProtocol.limits is None:  # a worker process of `serve --workers N`
            BoundedHttpToolsProtocol.limits = HeadLimits.from_settings(Settings())
        self._limits: HeadLimits = BoundedHttpToolsProtocol.limits
        self._in_head = True  # between requests, or reading a request line and headers
        self._head_begun = False  # a request line has begun and its headers have not all come
        self._raw = 0  # bytes received since the current head began
        self._head_bytes = 0
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and self._raw and not self.transport.is_closing():
            self._refuse(408, "request_timeout",
                         f"the request headers did not arrive within {self._limits.timeout:g} s")
        elif self._in_head and not self.transport.is_closing():
            self.transport.close()  # opened and never used: nothing to answer

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._disarm()
        self._refusal = (status, code, message)
        body = orjson.dumps(error_body(code, message))
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, reason, len(body), body))
        # A lingering close: closing at once with the client's bytes unread would send a reset, which can
        # destroy the answer before the client reads it. Half-close, drop what still comes, close soon.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _too_large(self, what: str) -> None:
        self._refusal = (431, "headers_too_large", what)
        raise _Refused

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, plus the byte count and our refusals (uvicorn would answer them with a 400).
        if self._refusal is not None or self.transport.is_closing():
            return
        if self._in_head:
            self._raw += len(data)
            if self._raw > self._limits.max_bytes + _READ_SLACK:
                self._refuse(431, "headers_too_large", f"request headers larger than {self._limits.max_bytes} bytes")
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
            if self._head_begun:  # the rest of the head is still to come: from now it has the timeout
                self._arm()
        except httptools.HttpParserCallbackError:
            if self._refusal is not None:  # one of our callbacks stopped the parser (it wraps _Refused)
                self._refuse(*self._refusal)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._head_begun = True
        self._head_bytes = self._head_count = 0
        # The head timer is armed only if this read ends before the head does (data_received): a head
        # that comes in one read, as nearly all do, costs no timer.

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self._limits.max_bytes:
            self._too_large(f"request line longer than {self._limits.max_bytes} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._head_count += 1
        if self._head_count > self._limits.max_count:
            self._too_large(f"more than {self._limits.max_count} request headers")
        if self._head_bytes > self._limits.max_bytes:
            self._too_large(f"request headers larger than {self._limits.max_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = self._head_begun = False
        self._raw = 0
        self._disarm()
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:  # a request to answer (not an upgrade)
            cycle.transport = cast(asyncio.Transport, _OneWrite(self.transport, cycle))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # whatever comes next on this connection is a new head
        self._raw = 0

