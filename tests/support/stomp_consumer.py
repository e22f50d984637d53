"""A stomp.py consumer of one queue, for tests that read what the gateway published to ActiveMQ."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson
import stomp
from conftest import STOMP_URL

from support.quiet import until_quiet


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
        """At least `n` bodies, then until no more arrive (so a duplicate is among them if there is one)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.bodies()) < n and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await until_quiet(lambda: len(self.bodies()))
        return self.bodies()
