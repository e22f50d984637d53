"""A loopback fake of the seed-001 bulk HTTP API (`GET /bulksms/bulksms?...`), answering as the seed says.

Replies are plain text sent as a PHP server sends it (`text/html; charset=UTF-8`): one
`<code>|<destination>|<message id>` item per destination, comma-separated (or newline-separated,
`separator`), `1701` for accepted; errors carry an empty message id. Request-level errors (bad
credentials, invalid type, ...) answer every destination with that code, or the bare code alone
when `bare_errors` is set (as some servers of this API do).

Checks, in order: a parameter missing or blank → 1702; credentials → 1703; type (0, 1, 2, 5, 6, 7)
→ 1704; dlr (0, 1) → 1708; source (numeric up to 18 digits, alphanumeric up to 11) → 1707; the text
must fit the type's character set (GSM 03.38 for 0/1, ISO-8859-1 for 5/7) → 1705; then per
destination: a number of 7 to 15 digits (optional `+`) → 1706, or the code scripted in `forced`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .alphabet import GSM, LATIN1
from .asgi import Receive, Scope, Send, respond

REQUIRED = ("username", "password", "type", "dlr", "destination", "source", "message")
_TYPE_CHARSET: dict[str, frozenset[str] | None] = {"0": GSM, "1": GSM, "2": None, "5": LATIN1, "6": None, "7": LATIN1}


@dataclass
class BulksmsFakeState:
    username: str = "user"
    password: str = "secret"
    forced: dict[str, str] = field(default_factory=dict)  # destination digits → reply code
    request_error: str | None = None  # one code for the whole request (1703, 1709, 1725, 16, ...)
    bare_errors: bool = False  # request-level errors as the bare code
    separator: str = ","
    delay: float = 0.0  # seconds before answering
    down: bool = False  # the web server in front answers 503
    status_override: int | None = None  # answer this HTTP status (with an HTML body) instead
    requests: list[dict[str, str]] = field(default_factory=list)  # every request's parameters
    raw_queries: list[bytes] = field(default_factory=list)
    accepted: dict[str, dict[str, str]] = field(default_factory=dict)  # message id → what was sent

    def new_id(self) -> str:
        return str(uuid.uuid4())


def _html(status: int, text: str) -> tuple[int, str]:
    return status, f"<html><head><title>{status} {text}</title></head><body><h1>{text}</h1></body></html>"


def _digits(number: str) -> str:
    return number[1:] if number.startswith("+") else number


def _valid_source(source: str) -> bool:
    numeric = _digits(source)
    if numeric.isdigit():
        return len(numeric) <= 18
    return len(source) <= 11 and all(ch.isascii() and (ch.isalnum() or ch in " .-_&") for ch in source)


def _fits(text: str, charset: frozenset[str] | None) -> bool:
    return charset is None or set(text) <= charset


def _request_error(state: BulksmsFakeState, p: dict[str, str]) -> str | None:
    if any(not p.get(name, "").strip() for name in REQUIRED):
        return "1702"
    if p["username"] != state.username or p["password"] != state.password:
        return "1703"
    if p["type"] not in _TYPE_CHARSET:
        return "1704"
    if p["dlr"] not in ("0", "1"):
        return "1708"
    if not _valid_source(p["source"]):
        return "1707"
    if not _fits(p["message"], _TYPE_CHARSET[p["type"]]):
        return "1705"
    return state.request_error


def _answer(state: BulksmsFakeState, p: dict[str, str]) -> str:
    destinations = [d.strip() for d in p.get("destination", "").split(",") if d.strip()] or [""]
    error = _request_error(state, p)
    if error is not None and state.bare_errors:
        return error
    items: list[str] = []
    for dest in destinations:
        code = error or state.forced.get(_digits(dest))
        if code is None and not (_digits(dest).isdigit() and 7 <= len(_digits(dest)) <= 15):
            code = "1706"
        if code is None:
            mid = state.new_id()
            state.accepted[mid] = {
                "destination": dest, "message": p["message"], "type": p["type"], "source": p["source"],
                "dlr": p["dlr"],
            }
            items.append(f"1701|{dest}|{mid}")
        else:
            items.append(f"{code}|{dest}|")
    return state.separator.join(items)


def create_app(state: BulksmsFakeState) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] not in ("/bulksms/bulksms", "/bulksms") or scope["method"] != "GET":
            await respond(send, *_html(404, "Not Found"))
            return
        query: bytes = scope.get("query_string", b"")
        state.raw_queries.append(query)
        params = dict(parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True))
        state.requests.append(params)
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.down:
            await respond(send, *_html(503, "Service Unavailable"))
        elif state.status_override is not None:
            await respond(send, *_html(state.status_override, "Error"))
        else:
            await respond(send, 200, _answer(state, params))

    return app
