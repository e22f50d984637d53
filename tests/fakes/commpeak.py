"""A loopback fake of the commpeak API (seed 000), answering byte for byte as the seed shows, as bare
ASGI (the e2e-http benchmark runs it as a process of its own: bench/fake_provider.py).

`GET|POST /api`: `command=submit` → 200 `{"message_id":"alss-…"}`; `command=query&messageId=` →
200 `{"status":"DELIVRD"}` (the scripted word) or `{"status":"message ID … not found"}`; 400
`Unknown username`, 401 `Incorrect password`, 400 `NO ROUTES` for scripted prefixes; 503 while `down`.
All with `Content-Type: text/html; charset=UTF-8`, as the seed's samples.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from .asgi import Receive, Scope, Send, read_params, respond


@dataclass
class FakeCommpeakState:
    username: str = "user"
    password: str = "secret"
    down: bool = False  # answer 503
    delay: float = 0.0
    no_routes_prefixes: tuple[str, ...] = ()  # dnis prefixes answered 400 NO ROUTES
    statuses: list[str] = field(default_factory=lambda: ["ENROUTE", "DELIVRD"])  # per query, last repeats
    dest_statuses: dict[str, list[str]] = field(default_factory=dict)  # dnis suffix -> statuses
    record: bool = True  # keep every submit's parameters in `received` (off in the benchmark)
    received: list[dict[str, str]] = field(default_factory=list)
    queries: dict[str, int] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # message id -> dnis
    _counter: Any = field(default_factory=lambda: itertools.count(1))


def _answer(state: FakeCommpeakState, params: dict[str, str]) -> tuple[int, str]:
    if state.down:
        return 503, "Service Unavailable"
    if params.get("username") != state.username:
        return 400, "Unknown username"
    if params.get("password") != state.password:
        return 401, "Incorrect password"
    command = params.get("command")
    if command == "query":
        mid = params.get("messageId", "")
        dnis = state.ids.get(mid)
        if dnis is None:
            return 200, f'{{"status":"message ID {mid} not found"}}'
        n = state.queries.get(mid, 0)
        state.queries[mid] = n + 1
        seq = state.statuses
        if state.dest_statuses:
            seq = next((v for k, v in state.dest_statuses.items() if dnis.endswith(k)), seq)
        return 200, f'{{"status":"{seq[min(n, len(seq) - 1)]}"}}'
    if command != "submit":
        return 400, "Unknown command"
    dnis = params.get("dnis", "")
    if any(dnis.startswith(p) for p in state.no_routes_prefixes):
        return 400, "NO ROUTES"
    n = next(state._counter)
    if state.record:
        state.received.append(params)
    mid = f"alss-{n:08x}-{len(state.ids) + 1:08x}"
    state.ids[mid] = dnis
    return 200, f'{{"message_id":"{mid}"}}'


def create_app(state: FakeCommpeakState) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/api":
            await respond(send, 404, "Not Found")
            return
        params = await read_params(scope, receive)
        if state.delay:
            await asyncio.sleep(state.delay)
        await respond(send, *_answer(state, params))

    return app
