"""`smsgw serve` as a real process, a keep-alive HTTP/1.1 client that reports what the wire did, the
whole gateway in-process against an SMSC on loopback (`smpp_gateway`), and waiting on a running gateway
for a message to reach a status.

The client never retries: a test that counts resets must see every one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from conftest import api_settings, running_app

from support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


class Gateway:
    """One `smsgw serve` on a free loopback port (`args`: more of its options); its output goes to `log_path`."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="smsgw-serve-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), *args], cwd=ROOT,
                                     env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"smsgw serve exited:\n{self.output()[-3000:]}"
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"smsgw serve not listening:\n{self.output()[-3000:]}")

    async def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:  # a JSON body, like httpx.Response.json()
        return orjson.loads(self.body)


class KeepAliveClient:
    """One TCP connection, requests one after another on it; raises when the server cuts it."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connections = 0  # TCP connections opened: 1 means keep-alive survived every answer

    async def request(self, method: str, path: str, body: bytes = b"", timeout: float = 30.0,
                      content_type: str = "application/json") -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.connections += 1
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.headers}"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        data = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))), timeout)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(int(lines[0].split()[1]), headers, data)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def wait_status(client: httpx.AsyncClient, sid: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
    """The message's JSON once its Status is one of `statuses`, or as it is after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        m: dict[str, Any] = (await client.get(f"/msg-client/messages/{sid}")).json()
        if m["Status"] in statuses or asyncio.get_running_loop().time() > deadline:
            return m
        await asyncio.sleep(0.05)


@asynccontextmanager
async def smpp_gateway(db_url: str, smsc_port: int, *, ready: bool = True, settings: dict[str, Any] | None = None,
                       **provider: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The whole gateway in-process (API, dispatcher, ESME binds, embedded broker) against the SMSC on
    `smsc_port`; `provider` overrides the SMPP provider's settings (window, sessions, bind, ...)."""
    values: dict[str, Any] = {"retry_base_seconds": 0.05, "retry_max_seconds": 0.5, **(settings or {})}
    config = {"name": "smsc-main", "type": "smpp", "port": smsc_port, "system_id": "smppclient1",
              "password": "password", **provider}
    app_settings = api_settings(
        db_url, broker_url=f"embedded://127.0.0.1:{free_port()}", providers=[config],
        routes=[{"channel": "smpp", "providers": ["smsc-main"]}], webhook_auth="token:x", **values)
    async with running_app(app_settings, start_workers=True) as client:
        if ready:
            for _ in range(200):
                if (await client.get("/health/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
        yield client
