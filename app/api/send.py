"""POST /msg-client/send — queue an SMS (contract §2).

Two routes share the path. `send` is the FastAPI operation: it documents the request, the answers and
the errors in OpenAPI. `lean_route` is registered in front of it and serves every request: a plain
ASGI endpoint (`SendEndpoint`) that reads the headers it needs from the scope, authenticates (cached
key lookup), parses the body once with orjson and checks it cheaply (app/api/send_body.py, which falls
back to the same pydantic model for anything unusual), and writes the answer's bytes itself — without
FastAPI's dependency solving, Starlette's Request and Response objects, or a database session of its
own unless an Idempotency-Key needs one. Both routes answer the same things:
tests/integration/test_send_lean.py compares them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from app.api import send_body
from app.api.deps import ApiKeyDep, AppContext, Ctx, authenticate
from app.api.errors import error_response, headers_of, status_of
from app.api.responses import Json
from app.api.schemas import BulkSendResult, SendRequest, SendResult, error_responses
from app.domain.commands import SendCommand
from app.errors import ClientError
from app.services.accept import Accepted, accept

router = APIRouter(prefix="/msg-client", tags=["send"])
log = logging.getLogger("smsgw.api")


@router.post(
    "/send",
    response_model=SendResult | BulkSendResult,
    responses={
        200: {
            "description": "stored and queued (or scheduled); several recipients answer `Messages`",
            "content": {"application/json": {"examples": {
                "one": {"value": {"MessageSid": "SM0123456789abcdef0123456789abcdef", "Status": "queued",
                                  "To": "+96170123456", "Segments": 1, "Encoding": "GSM7"}},
                "several": {"value": {"Messages": [{"MessageSid": "SM…", "Status": "queued", "To": "+96170123456",
                                                    "Segments": 1, "Encoding": "GSM7"}]}},
            }}},
        },
        **error_responses(400, 401, 413, 429, 500, 503),
    },
    summary="Queue an SMS",
)
async def send(
    req: SendRequest,
    ctx: Ctx,
    key: ApiKeyDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Stores the message (committed before the answer) and queues it for the route's provider.

    The same `Idempotency-Key` with the same body answers the first answer and queues nothing new.
    """
    return await _accept(ctx, SendCommand(**req.model_dump()), key.id, idempotency_key)


async def _accept(ctx: AppContext, command: SendCommand, key_id: int, idempotency_key: str | None) -> Json:
    result = await _accepted(ctx, command, key_id, idempotency_key)
    return Json(result.body, status_code=result.status_code)


async def _accepted(ctx: AppContext, command: SendCommand, key_id: int, idempotency_key: str | None) -> Accepted:
    result = await accept(ctx.sessions, command, ctx.settings, key_id, idempotency_key, ctx.accept_batcher)
    if not result.replayed:
        ctx.wake_dispatcher()
        channel = (command.channel or ctx.settings.default_channel).strip()
        ctx.metrics.count_accepted(channel, len(result.body.get("Messages") or (result.body,)))
        if log.isEnabledFor(logging.INFO):
            _log_accepted(result, channel)
    return result


Message = MutableMapping[str, Any]


class SendEndpoint:
    """The lean POST /msg-client/send, as a pure ASGI app. Errors are raised (ClientError) for the app's
    one handler to answer, exactly as on the documented route."""

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        ctx: AppContext = scope["app"].state.ctx
        api_key = authorization = content_type = idempotency_key = None
        for name, value in scope["headers"]:  # ASGI header names are lower-case; the first one counts
            if name == b"x-api-key":
                api_key = api_key if api_key is not None else value.decode("latin-1")
            elif name == b"authorization":
                authorization = authorization if authorization is not None else value.decode("latin-1")
            elif name == b"content-type":
                content_type = content_type if content_type is not None else value.decode("latin-1")
            elif name == b"idempotency-key":
                idempotency_key = idempotency_key if idempotency_key is not None else value.decode("latin-1")
        key = await authenticate(ctx, api_key, authorization)
        command = send_body.command_from(send_body.parse(await _read_body(receive), content_type))
        result = await _accepted(ctx, command, key.id, idempotency_key)
        body = orjson.dumps(result.body)
        await send({"type": "http.response.start", "status": result.status_code, "headers": [
            (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Callable[[], Awaitable[Message]]) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


# Served in front of the documented operation (app/main.py puts it first in the router).
lean_endpoint = SendEndpoint()
lean_route = Route("/msg-client/send", lean_endpoint, methods=["POST"], include_in_schema=False)


def is_lean_send(scope: Message, router: Any) -> bool:
    """Whether `serve_lean` answers this request: POST /msg-client/send, while `lean_route` is in the
    router (first in it, so the check is O(1); a test removes it to reach the documented operation)."""
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/msg-client/send" \
        and not scope.get("root_path") and lean_route in router.routes


async def serve_lean(scope: Message, receive: Callable[[], Awaitable[Message]],
                     send: Callable[[Message], Awaitable[None]]) -> None:
    """`lean_endpoint` without the router and Starlette's exception middleware: a ClientError is answered
    here, by the same function as the app's handler (so the bytes are the same)."""
    scope["route"] = lean_route  # the latency metric's label, as the router would set it
    try:
        await lean_endpoint(scope, receive, send)
    except ClientError as exc:  # SendEndpoint raises them before its answer starts, never after
        response = error_response(status_of(exc), exc.code, exc.message, exc.field, headers_of(exc))
        await response(scope, receive, send)


def _log_accepted(result: Accepted, channel: str) -> None:
    """One INFO line per message; a bulk send logs one for the whole request (its lines at DEBUG)."""
    messages: list[dict[str, Any]] = result.body.get("Messages") or [result.body]
    first = messages[0]
    if len(messages) == 1:
        log.info("message accepted", extra={"message_sid": first["MessageSid"], "to": first["To"], "channel": channel,
                                            "segments": first["Segments"], "status": first["Status"]})
        return
    log.info("messages accepted", extra={"count": len(messages), "channel": channel, "segments": first["Segments"],
                                         "status": first["Status"], "first_message_sid": first["MessageSid"],
                                         "last_message_sid": messages[-1]["MessageSid"]})
    if log.isEnabledFor(logging.DEBUG):
        for m in messages:
            log.debug("message accepted", extra={"message_sid": m["MessageSid"], "to": m["To"], "channel": channel,
                                                 "segments": m["Segments"], "status": m["Status"]})
