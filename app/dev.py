"""`smsgw dev` (what `make run` starts): the gateway on SQLite, the embedded broker and the bundled SMSC
simulator, for a person at a terminal.

What that person sees: nothing but warnings until one `ready` line (once /health/ready answers 200)
naming the URL, the API key, the broker, the SMSC and the database; Ctrl-C (or SIGTERM) prints one
`stopped` line and exits 0. A port already taken is reported before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import uvicorn

from app.config import Settings

READY_TIMEOUT = 30.0
# Lines a person starting the gateway does not need: the ready line says the same.
QUIET_LOGGERS = ("uvicorn.error", "app.simulator")


@dataclass(frozen=True)
class PortUse:
    host: str
    port: int
    what: str
    change: str  # how to pick another port


def broker_port(settings: Settings) -> int | None:
    """The embedded broker's port, None when the broker is an external one."""
    url = settings.broker_url.strip()
    if not url.startswith("embedded"):
        return None
    _, _, port = url.rpartition(":")
    return int(port) if port.isdigit() else 61613


def ports_in_use(settings: Settings, smsc_port: int) -> list[PortUse]:
    """The ports `smsgw dev` would listen on that something else already holds."""
    wanted = [PortUse(settings.host, settings.port, "the HTTP API", "SMSGW_PORT=8081 make run"),
              PortUse("127.0.0.1", smsc_port, "the SMSC simulator",
                      "make run RUN_ARGS='--smsc-port 2776' (smsgw dev --smsc-port 2776)")]
    mq = broker_port(settings)
    if mq is not None:
        wanted.append(PortUse("127.0.0.1", mq, "the embedded STOMP broker",
                              "SMSGW_BROKER_URL=embedded://127.0.0.1:61614 make run"))
    taken = []
    for use in wanted:
        family = socket.AF_INET6 if ":" in use.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # As the servers will bind: SO_REUSEADDR, so only a listening socket counts as taken.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((use.host, use.port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                taken.append(use)
    return taken


def _redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def ready_line(settings: Settings, smsc_port: int) -> str:
    keys = settings.api_key_list()
    mq = broker_port(settings)
    broker = (f"stomp://127.0.0.1:{mq} (embedded)" if mq is not None
              else ", ".join(_redact_url(u) for u in settings.broker_urls()))
    smpp = [p for p in settings.providers if p.type == "smpp"]
    smsc = ", ".join(f"{p.name} {p.host}:{p.port}" for p in smpp) or "none"
    if any(p.port == smsc_port for p in smpp):
        smsc += " (bundled simulator, smppclient1/password)"
    return (f"ready: http://{settings.host}:{settings.port}  API key: {keys[0] if keys else '(none)'}  "
            f"broker: {broker} /queue/{settings.delivery_report_queue}  "
            f"SMSC: {smsc}  "
            f"database: {_redact_url(settings.database_url)}  (Ctrl-C stops)")


class _DevServer(uvicorn.Server):
    """uvicorn, with its signal handling replaced: the first SIGINT/SIGTERM stops gracefully, a second
    forces; nothing is re-raised afterwards (uvicorn re-raises the captured signal once it has shut
    down, which turns Ctrl-C into a KeyboardInterrupt traceback out of asyncio.run)."""

    stopping = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _stop(self, sig: int) -> None:
        if not self.stopping:
            self.stopping = True
            quiet_console(logging.WARNING)  # the shutdown's INFO lines are noise to the person who asked
        self.handle_exit(sig, None)


def quiet_console(level: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


async def _wait_ready(settings: Settings, server: _DevServer, serving: asyncio.Task[None]) -> bool:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://{settings.host}:{settings.port}", timeout=2) as client:
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while asyncio.get_running_loop().time() < deadline and not serving.done() and not server.stopping:
            if server.started:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health/ready")).status_code == 200:
                        return True
            await asyncio.sleep(0.1)
    return False


async def serve_dev(settings: Settings, smsc_port: int, out: TextIO = sys.stdout) -> int:
    from app.main import create_app
    from app.simulator.server import SimulatorConfig, SmscSimulator

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    sim = SmscSimulator(SimulatorConfig(host="127.0.0.1", port=smsc_port))
    await sim.start()
    server = _DevServer(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                       log_config=None, access_log=False, server_header=False,
                                       proxy_headers=False))
    serving = asyncio.create_task(server.serve())
    try:
        if await _wait_ready(settings, server, serving):
            print(ready_line(settings, smsc_port), file=out, flush=True)
        elif not serving.done() and not server.stopping:
            print(f"started, but /health/ready is not 200 after {READY_TIMEOUT:g} s: "
                  f"curl http://{settings.host}:{settings.port}/health/ready", file=out, flush=True)
        await serving
    finally:
        await sim.stop()
    if server.stopping:
        print("stopped", file=out, flush=True)
        return 0
    return 0 if server.started else 1
