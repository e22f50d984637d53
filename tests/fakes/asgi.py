"""The little the fakes need of HTTP, as bare ASGI (no framework): a fake must answer faster than
the gateway asks, or the benchmark measures the fake. Served by uvicorn with httptools."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PHP_TEXT = b"text/html; charset=UTF-8"  # what the seeds' sample answers show


async def read_params(scope: Scope, receive: Receive) -> dict[str, str]:
    """Query string parameters, then (POST) the form body's over them; UTF-8, `+` as space."""
    params = dict(parse_qsl(scope.get("query_string", b"").decode("utf-8", "replace"), keep_blank_values=True))
    if scope.get("method") == "POST":
        chunks: list[bytes] = []
        more = True
        while more:
            event = await receive()
            chunks.append(event.get("body", b""))
            more = event.get("more_body", False)
        params.update(parse_qsl(b"".join(chunks).decode("utf-8", "replace"), keep_blank_values=True))
    return params


async def respond(send: Send, status: int, body: str, content_type: bytes = PHP_TEXT,
                  headers: dict[str, str] | None = None) -> None:
    data = body.encode("utf-8")
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(data)).encode()), *extra]})
    await send({"type": "http.response.body", "body": data})
