"""The whole gateway in-process (API, dispatcher, ESME binds, embedded broker) against an SMSC on
loopback: for on-the-wire tests that need their own provider settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from conftest import api_settings, running_app

from support.smsc_process import free_port


@asynccontextmanager
async def smpp_gateway(db_url: str, smsc_port: int, *, ready: bool = True, settings: dict[str, Any] | None = None,
                       **provider: Any) -> AsyncIterator[httpx.AsyncClient]:
    """`provider` overrides the SMPP provider's settings (window, sessions, bind, temporary_errors...)."""
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


async def wait_status(client: httpx.AsyncClient, sid: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
    """The message once its status is one of `statuses` (or as it is when `timeout` runs out)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        m: dict[str, Any] = (await client.get(f"/msg-client/messages/{sid}")).json()
        if m["Status"] in statuses or asyncio.get_running_loop().time() > deadline:
            return m
        await asyncio.sleep(0.05)
