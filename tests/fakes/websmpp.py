"""A loopback fake of the websmpp HTTP API (seed 002), answering as the seed says, as bare ASGI.

`GET|POST /websmpp/websms?user&pass&sid&mno&type&text`: one line per destination, `Response: <id>`
(or the bare `<id>`, `bare_ids`) or `ERROR - HTTPnn`. Checks, in order: a parameter missing → HTTP02;
user → HTTP05; pass → HTTP04; type 1–4 → HTTP07; the text must suit its type (1: characters that are
the same in GSM 03.38 and ASCII; 3: GSM 03.38; 2: hex UCS-2) → HTTP19; more numbers than the
request may carry (100 by GET, 10,000 by POST, or the account's `max_destinations`) → HTTP24.
`GET /websmpp/websmsstatus?respId=` → the scripted status word (ATES, then DELIVRD by default);
`GET /websmpp/balanceReport?userid&password`.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from .alphabet import GSM
from .asgi import Receive, Scope, Send, read_params, respond

ENGLISH = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"%'()*+,-./:;<=>?\n\r")


@dataclass
class FakeWebsmppState:
    user: str = "user"
    password: str = "secret"
    forced: dict[str, str] = field(default_factory=dict)  # destination suffix -> HTTPnn error
    request_error: str | None = None
    statuses: list[str] = field(default_factory=lambda: ["ATES", "DELIVRD"])
    dest_statuses: dict[str, list[str]] = field(default_factory=dict)
    balance: str = "Balance: 123.45"
    bare_ids: bool = False  # answer `2541524` instead of `Response: 2541524`
    max_destinations: int | None = None  # the account's own limit per request (HTTP24 above it)
    delay: float = 0.0  # seconds before answering a submit
    requests: list[dict[str, str]] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    _counter: Any = field(default_factory=lambda: itertools.count(2541524))


def _suits(kind: str, text: str) -> bool:
    if kind == "1":
        return set(text) <= ENGLISH
    if kind == "3":
        return set(text) <= GSM and "&" not in text and "#" not in text
    if kind == "2":
        try:
            return len(text) % 4 == 0 and bool(bytes.fromhex(text).decode("utf-16-be"))
        except ValueError:
            return False
    return True


def _websms(state: FakeWebsmppState, params: dict[str, str], post: bool) -> str:
    for key in ("user", "pass", "sid", "mno", "type", "text"):
        if key not in params:
            return "ERROR - HTTP02"
    if params["user"] != state.user:
        return "ERROR - HTTP05"
    if params["pass"] != state.password:
        return "ERROR - HTTP04"
    if params["type"] not in ("1", "2", "3", "4"):
        return "ERROR - HTTP07"
    if not _suits(params["type"], params["text"]):
        return "ERROR - HTTP19"
    if state.request_error:
        return f"ERROR - {state.request_error}"
    numbers = params["mno"].split(",")
    limit = min(10_000 if post else 100, state.max_destinations or 10_000)
    if len(numbers) > limit:
        return "ERROR - HTTP24"
    lines = []
    for number in numbers:
        error = next((v for k, v in state.forced.items() if number.endswith(k)), None)
        if error:
            lines.append(f"ERROR - {error}")
            continue
        mid = str(next(state._counter))
        state.ids[mid] = number
        lines.append(mid if state.bare_ids else f"Response: {mid}")
    return "\n".join(lines)


def _status(state: FakeWebsmppState, mid: str) -> str:
    number = state.ids.get(mid)
    if number is None:
        return "ERROR - HTTP25"
    n = state.queries.get(mid, 0)
    state.queries[mid] = n + 1
    seq = next((v for k, v in state.dest_statuses.items() if number.endswith(k)), state.statuses)
    return seq[min(n, len(seq) - 1)]


def create_app(state: FakeWebsmppState) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, params = scope["path"], await read_params(scope, receive)
        if path == "/websmpp/websms":
            state.requests.append(params)
            if state.delay:
                await asyncio.sleep(state.delay)
            await respond(send, 200, _websms(state, params, scope["method"] == "POST"))
        elif path == "/websmpp/websmsstatus":
            await respond(send, 200, _status(state, params.get("respId", "")))
        elif path == "/websmpp/balanceReport":
            ok = params.get("userid") == state.user and params.get("password") == state.password
            await respond(send, 200, state.balance if ok else "ERROR - HTTP15")
        else:
            await respond(send, 404, "Not Found")

    return app
