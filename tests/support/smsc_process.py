"""The bundled SMSC simulator in a process of its own, driven over its control port: for tests that
must freeze it (SIGSTOP) or kill it, which an in-process simulator cannot stand for."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


class SmscProcess:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.control_port = free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    async def start(self) -> SmscProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.simulator", "--port", str(self.port), "--control-port",
             str(self.control_port), "--no-default-rules", "--log-level", "WARNING", *self.args],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                if await self.control("ping") == "PONG":
                    return self
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("the simulator did not start")

    async def control(self, command: str) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.control_port)
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
        finally:
            writer.close()

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(await self.control("stats"))
        return data

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and the kernel keeps accepting, nothing is answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.frozen:
            self.thaw()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
