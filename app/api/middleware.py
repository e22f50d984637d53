"""Pure ASGI middleware: request ids, the body size limit (413), request timing, and the 503 gate while
the gateway waits for its database at start."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson

from app.api.errors import error_body, unexpected_error_response
from app.logs import request_id_var

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


log = logging.getLogger("smsgw.api")

# A client's own X-Request-ID is kept when it is a plain token (a UUID, a trace id); anything else
# (spaces, control characters) is replaced, since the id goes into every log line of the request.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,64}")


class _TooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Gives each request an id (`X-Request-ID`, echoed back, and `request_id` on every log line while
    the request is served), refuses bodies over `max_body` bytes with 413 before reading them whole,
    and reports the latency to `observe(method, route, status, s)`."""

    def __init__(self, app: Any, max_body: int, observe: Callable[[str, str, int, float], None]) -> None:
        self.app = app
        self.max_body = max_body
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Only the two headers this needs, straight from the scope (no dict of every header per request);
        # a repeated one counts by its last value.
        request_id = declared = None
        for name, value in scope.get("headers", ()):
            lower = name.lower()
            if lower == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
            elif lower == b"content-length":
                declared = value.decode("latin-1")
        if request_id is None or not _CLIENT_ID.fullmatch(request_id):
            request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        context = request_id_var.set(request_id)
        request_id_header = (b"x-request-id", request_id.encode())
        max_body = self.max_body
        status = 500
        started_response = finished_response = False
        # Set when the body passed `max_body`; `replaced` once the 413 went out in place of the app's answer.
        over_limit = replaced = False

        async def forward(message: dict[str, Any]) -> None:
            nonlocal started_response, finished_response, status
            kind = message["type"]
            if kind == "http.response.start":
                started_response = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header]
            elif kind == "http.response.body" and not message.get("more_body", False):
                finished_response = True
            await send(message)

        async def reject_413() -> None:
            body = orjson.dumps(error_body("payload_too_large", f"body larger than {max_body} bytes"))
            await forward({"type": "http.response.start", "status": 413, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await forward({"type": "http.response.body", "body": body})

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal replaced
            # A body without Content-Length goes over the limit while the app reads it, and the app may
            # turn our exception into an answer of its own (FastAPI's 400 "error parsing the body", the
            # form parser's 400): the answer is 413 all the same.
            if over_limit and not started_response and message["type"] == "http.response.start":
                replaced = True
                await reject_413()
            if not replaced:
                await forward(message)

        try:
            if declared is not None and declared.isdigit() and int(declared) > max_body:
                await reject_413()
                return
            received = 0

            async def receive_wrapper() -> Any:
                nonlocal received, over_limit
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > max_body:
                        over_limit = True
                        raise _TooLarge
                return message

            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except _TooLarge:
                if not started_response:
                    await reject_413()
            except Exception as exc:
                # Answered here rather than by Starlette's outermost handler, which re-raises to the server:
                # uvicorn then drops the keep-alive connection, and clients that had already sent their
                # next request on it get a reset instead of their answer.
                if not started_response:
                    response = unexpected_error_response(exc, request_id, scope.get("path", ""))
                    await forward({"type": "http.response.start", "status": response.status_code,
                                   "headers": list(response.raw_headers)})
                    await forward({"type": "http.response.body", "body": bytes(response.body)})
                elif finished_response:  # e.g. a dependency's clean-up after the answer went out
                    log.error("error after the response was sent", exc_info=exc,
                              extra={"request_id": request_id, "path": scope.get("path", "")})
                else:
                    raise  # a half-sent answer: only closing the connection tells the client
        finally:
            request_id_var.reset(context)
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.observe(scope.get("method", ""), path, status, time.perf_counter() - started)


# What answers while the gateway waits for its database: the probes and the documentation.
_OPEN_WHILE_STARTING = ("/health/", "/metrics", "/docs", "/openapi.json", "/redoc")


class StartupGate:
    """Until `started()` is true, every request but `_OPEN_WHILE_STARTING` gets 503 with `Retry-After`:
    nothing can be authenticated, stored or looked up before the database is there (and the keys from
    `SMSGW_API_KEYS` are in it), so a 401 or a 500 would be a wrong answer."""

    RETRY_AFTER = b"2"

    def __init__(self, app: Any, started: Callable[[], bool]) -> None:
        self.app = app
        self.started = started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.started() or scope.get("path", "").startswith(_OPEN_WHILE_STARTING):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps(error_body("unavailable", "the gateway is starting and its database is not reachable "
                                                      "yet; retry shortly"))
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", self.RETRY_AFTER)]})
        await send({"type": "http.response.body", "body": body})
