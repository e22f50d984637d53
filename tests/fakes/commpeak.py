"""A loopback fake of the commpeak API (seed 000), answering byte for byte as the seed shows."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CTYPE = "text/html; charset=UTF-8"


@dataclass
class FakeCommpeakState:
    username: str = "user"
    password: str = "secret"
    down: bool = False  # answer 503
    delay: float = 0.0
    no_routes_prefixes: tuple[str, ...] = ()  # dnis prefixes answered 400 NO ROUTES
    statuses: list[str] = field(default_factory=lambda: ["ENROUTE", "DELIVRD"])  # per query, last repeats
    dest_statuses: dict[str, list[str]] = field(default_factory=dict)  # dnis suffix -> statuses
    received: list[dict[str, str]] = field(default_factory=list)
    queries: dict[str, int] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # message id -> dnis
    _counter: Any = field(default_factory=lambda: itertools.count(1))


def _text(body: str, status: int) -> Response:
    return Response(body, status_code=status, media_type=None, headers={"content-type": CTYPE})


def create_app(state: FakeCommpeakState) -> Starlette:
    async def api(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.down:
            return _text("Service Unavailable", 503)
        if params.get("username") != state.username:
            return _text("Unknown username", 400)
        if params.get("password") != state.password:
            return _text("Incorrect password", 401)
        if params.get("command") == "query":
            mid = params.get("messageId", "")
            dnis = state.ids.get(mid)
            if dnis is None:
                return _text(f'{{"status":"message ID {mid} not found"}}', 200)
            n = state.queries.get(mid, 0)
            state.queries[mid] = n + 1
            seq = next((v for k, v in state.dest_statuses.items() if dnis.endswith(k)), state.statuses)
            return _text(f'{{"status":"{seq[min(n, len(seq) - 1)]}"}}', 200)
        if params.get("command") != "submit":
            return _text("Unknown command", 400)
        dnis = params.get("dnis", "")
        if any(dnis.startswith(p) for p in state.no_routes_prefixes):
            return _text("NO ROUTES", 400)
        state.received.append(params)
        mid = f"alss-{next(state._counter):08x}-{len(state.received):08x}"
        state.ids[mid] = dnis
        return _text(f'{{"message_id":"{mid}"}}', 200)

    return Starlette(routes=[Route("/api", api, methods=["GET", "POST"])])
