"""A loopback fake of the websmpp HTTP API (seed 002): `Response: <id>` / `ERROR - HTTPnn` bodies."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class FakeWebsmppState:
    user: str = "user"
    password: str = "secret"
    forced: dict[str, str] = field(default_factory=dict)  # destination suffix -> HTTPnn error
    request_error: str | None = None
    statuses: list[str] = field(default_factory=lambda: ["ATES", "DELIVRD"])
    dest_statuses: dict[str, list[str]] = field(default_factory=dict)
    balance: str = "Balance: 123.45"
    delay: float = 0.0  # seconds before answering a submit
    requests: list[dict[str, str]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    _counter: Any = field(default_factory=lambda: itertools.count(2541524))


def _text(body: str) -> Response:
    return Response(body, media_type=None, headers={"content-type": "text/html; charset=UTF-8"})


def create_app(state: FakeWebsmppState) -> Starlette:
    async def websms(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        state.requests.append(params)
        if state.delay:
            await asyncio.sleep(state.delay)
        for key in ("user", "pass", "sid", "mno", "type", "text"):
            if key not in params:
                return _text("ERROR - HTTP02")
        if params["user"] != state.user:
            return _text("ERROR - HTTP05")
        if params["pass"] != state.password:
            return _text("ERROR - HTTP04")
        if params["type"] not in ("1", "2", "3", "4"):
            return _text("ERROR - HTTP07")
        if state.request_error:
            return _text(f"ERROR - {state.request_error}")
        numbers = params["mno"].split(",")
        if len(numbers) > (10_000 if request.method == "POST" else 100):
            return _text("ERROR - HTTP24")
        lines = []
        for number in numbers:
            error = next((v for k, v in state.forced.items() if number.endswith(k)), None)
            if error:
                lines.append(f"ERROR - {error}")
                continue
            mid = str(next(state._counter))
            state.ids[mid] = number
            lines.append(f"Response: {mid}")
        return _text("\n".join(lines))

    async def status(request: Request) -> Response:
        mid = request.query_params.get("respId", "")
        number = state.ids.get(mid)
        if number is None:
            return _text("ERROR - HTTP25")
        n = state.queries.get(mid, 0)
        state.queries[mid] = n + 1
        seq = next((v for k, v in state.dest_statuses.items() if number.endswith(k)), state.statuses)
        return _text(seq[min(n, len(seq) - 1)])

    async def balance(request: Request) -> Response:
        if request.query_params.get("userid") != state.user or request.query_params.get("password") != state.password:
            return _text("ERROR - HTTP15")
        return _text(state.balance)

    return Starlette(routes=[
        Route("/websmpp/websms", websms, methods=["GET", "POST"]),
        Route("/websmpp/websmsstatus", status, methods=["GET"]),
        Route("/websmpp/balanceReport", balance, methods=["GET"]),
    ])
