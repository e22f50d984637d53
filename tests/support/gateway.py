"""Waiting on a running gateway (`conftest.running_app`) for a message to reach a status."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


async def wait_status(client: httpx.AsyncClient, sid: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
    """The message's JSON once its Status is one of `statuses`, or as it is after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        m: dict[str, Any] = (await client.get(f"/msg-client/messages/{sid}")).json()
        if m["Status"] in statuses or asyncio.get_running_loop().time() > deadline:
            return m
        await asyncio.sleep(0.05)
