"""A minimal asyncio STOMP 1.2 client for publishing to the broker: CONNECT, pipelined SENDs with
receipts, transactions, and queue browsing (ActiveMQ's `browser: true`). Frames: stomp_frames.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

from app.events.stomp_frames import Frame, encode_frame, parse_frames


class StompError(Exception):
    pass


class StompConnection:
    """A minimal asyncio STOMP 1.2 client for publishing: CONNECT, pipelined SENDs with receipts."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._browsing: dict[str, tuple[list[dict[str, str]], asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._buffer = bytearray()
        self._frames: deque[Frame] = deque()
        self.closed = False

    @classmethod
    async def open(cls, url: str, login: str | None, passcode: str | None, timeout: float = 5.0) -> StompConnection:
        parts = urlsplit(url if "://" in url else f"stomp://{url}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 61613
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        conn = cls(reader, writer)
        headers = {"accept-version": "1.2", "host": host, "heart-beat": "0,0"}
        if login:
            headers["login"] = login
        if passcode:
            headers["passcode"] = passcode
        writer.write(encode_frame("CONNECT", headers))
        await writer.drain()
        command, hdrs, _ = await asyncio.wait_for(conn._read_frame(), timeout)
        if command != "CONNECTED":
            writer.close()
            raise StompError(f"broker refused the connection: {hdrs.get('message', command)}")
        conn._task = asyncio.create_task(conn._read_loop())
        return conn

    async def _read_frame(self) -> Frame:
        while not self._frames:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("broker closed the connection")
            self._buffer += data
            self._frames.extend(parse_frames(self._buffer))
        return self._frames.popleft()

    async def _read_loop(self) -> None:
        error: Exception = ConnectionError("broker connection lost")
        try:
            while True:
                command, headers, body = await self._read_frame()
                if command == "RECEIPT":
                    fut = self._waiting.pop(headers.get("receipt-id", ""), None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                elif command == "MESSAGE":
                    found = self._browsing.get(headers.get("subscription", ""))
                    if found is None:
                        continue
                    if headers.get("browser") == "end":
                        if not found[1].done():
                            found[1].set_result(None)
                    else:
                        found[0].append(headers)
                elif command == "ERROR":
                    error = StompError(headers.get("message", "") or body.decode(errors="replace")[:200])
                    break
        except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError) as exc:
            error = ConnectionError(str(exc) or "broker connection lost")
        finally:
            self.closed = True
            for fut in [*self._waiting.values(), *(f for _, f in self._browsing.values())]:
                if not fut.done():
                    fut.set_exception(error)
            self._waiting.clear()

    async def send_batch(self, frames: Sequence[tuple[str, dict[str, str], str]], timeout: float = 30.0) -> None:
        """SEND every (destination, headers, body) in one write; returns when the broker confirmed all."""
        if self.closed:
            raise ConnectionError("broker connection is closed")
        futures: list[asyncio.Future[None]] = []
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()
        for destination, headers, body in frames:
            rid = str(next(self._ids))
            fut: asyncio.Future[None] = loop.create_future()
            self._waiting[rid] = fut
            futures.append(fut)
            chunks.append(encode_frame("SEND", {"destination": destination, **headers, "receipt": rid}, body.encode()))
        self._writer.write(b"".join(chunks))
        await self._writer.drain()
        await asyncio.wait_for(asyncio.gather(*futures), timeout)

    async def send_transaction(self, frames: Sequence[tuple[str, dict[str, str], str]], timeout: float = 30.0) -> None:
        """SEND every (destination, headers, body) inside one transaction, in one write; returns when the
        broker confirmed the COMMIT. If the connection fails first, the outcome is unknown (in doubt)."""
        if self.closed:
            raise ConnectionError("broker connection is closed")
        n = next(self._ids)
        tx, rid = f"tx-{n}", str(n)
        chunks = [encode_frame("BEGIN", {"transaction": tx})]
        chunks += [encode_frame("SEND", {"destination": destination, **headers, "transaction": tx}, body.encode())
                   for destination, headers, body in frames]
        chunks.append(encode_frame("COMMIT", {"transaction": tx, "receipt": rid}))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        self._writer.write(b"".join(chunks))
        await self._writer.drain()
        await asyncio.wait_for(fut, timeout)

    async def browse(self, destination: str, selector: str, timeout: float = 10.0) -> list[dict[str, str]]:
        """The headers of the messages on a queue that match a JMS selector, without consuming them
        (ActiveMQ's queue browser: `browser: true`, ended by a MESSAGE with `browser: end`)."""
        if self.closed:
            raise ConnectionError("broker connection is closed")
        sub = f"browse-{next(self._ids)}"
        found: list[dict[str, str]] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._browsing[sub] = (found, done)
        try:
            self._writer.write(encode_frame("SUBSCRIBE", {"destination": destination, "id": sub, "ack": "auto",
                                                    "browser": "true", "selector": selector}))
            await self._writer.drain()
            await asyncio.wait_for(done, timeout)
            self._writer.write(encode_frame("UNSUBSCRIBE", {"id": sub}))
            await self._writer.drain()
        finally:
            self._browsing.pop(sub, None)
        return found

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            self._writer.write(encode_frame("DISCONNECT", {}))
            self._writer.close()
        self.closed = True
