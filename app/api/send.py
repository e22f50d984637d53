"""POST /msg-client/send — queue an SMS (contract §2).

Two routes share the path. `send` is the FastAPI operation: it documents the request, the answers and
the errors in OpenAPI. `send_lean` is registered in front of it and serves every request: a plain
Starlette endpoint that authenticates, parses the body with orjson and validates it with the same
pydantic model, without FastAPI's dependency solving (which cost about half of a single-recipient
send's CPU). Both answer the same things; tests/integration/test_api_send.py compares them.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.api.deps import ApiKeyDep, AppContext, Ctx, Session, authenticate
from app.api.errors import from_validation
from app.api.responses import Json
from app.api.schemas import BulkSendResult, SendRequest, SendResult, error_responses
from app.domain.commands import SendCommand
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
    session: Session,
    key: ApiKeyDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Stores the message (committed before the answer) and queues it for the route's provider.

    The same `Idempotency-Key` with the same body answers the first answer and queues nothing new.
    """
    return await _accept(ctx, session, req, key.id, idempotency_key)


async def _accept(ctx: AppContext, session: AsyncSession, req: SendRequest, key_id: int,
                  idempotency_key: str | None) -> Json:
    command = SendCommand(**req.model_dump())
    result = await accept(session, command, ctx.settings, key_id, idempotency_key, ctx.accept_batcher)
    if not result.replayed:
        ctx.wake_dispatcher()
        channel = (req.channel or ctx.settings.default_channel).strip()
        ctx.metrics.accepted.labels(channel).inc(len(result.body.get("Messages") or (result.body,)))
        if log.isEnabledFor(logging.INFO):
            _log_accepted(result, channel)
    return Json(result.body, status_code=result.status_code)


def _is_json(content_type: str | None) -> bool:
    # As FastAPI decides: application/json or application/*+json, parameters ignored.
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


async def send_lean(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    headers = request.headers
    key = await authenticate(ctx, headers.get("x-api-key"), headers.get("authorization"))
    raw = await request.body()
    if not raw:
        raise from_validation([{"type": "missing", "loc": ("body",)}])
    if not _is_json(headers.get("content-type")):
        raise from_validation([{"type": "model_attributes_type", "loc": ("body",)}])
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # What orjson refuses, FastAPI's json.loads may take (UTF-16/32 bodies, an encoded surrogate that
        # the field check then names): decide as it would, on this rare path only.
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise from_validation([{"type": "json_invalid", "loc": ("body", 0)}]) from None
    try:
        req = SendRequest.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc.errors()) from None
    async with ctx.sessions() as session:  # opens no connection unless an Idempotency-Key needs one
        return await _accept(ctx, session, req, key.id, headers.get("idempotency-key"))


# Served in front of the documented operation (app/main.py puts it first in the router).
lean_route = Route("/msg-client/send", send_lean, methods=["POST"], include_in_schema=False)


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
