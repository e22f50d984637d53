"""POST /msg-client/send — queue an SMS (contract §2)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header

from app.api.deps import ApiKeyDep, Ctx, Session
from app.api.responses import Json
from app.api.schemas import BulkSendResult, SendRequest, SendResult, error_responses
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
    result = await accept(session, req, ctx.settings, key.id, idempotency_key, ctx.extras.get("accept_batcher"))
    if not result.replayed:
        ctx.wake_dispatcher()
        channel = (req.channel or ctx.settings.default_channel).strip()
        metrics = ctx.extras.get("metrics")
        if metrics is not None and result.status_code == 200:
            metrics.accepted.labels(channel).inc(len(result.body.get("Messages") or [result.body]))
        if log.isEnabledFor(logging.INFO):
            _log_accepted(result, channel)
    return Json(result.body, status_code=result.status_code)


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
