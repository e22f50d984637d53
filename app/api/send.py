"""POST /msg-client/send — queue an SMS (contract §2)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header

from app.api.deps import ApiKeyDep, Ctx, Session
from app.api.responses import Json
from app.api.schemas import BulkSendResult, SendRequest, SendResult, error_responses
from app.services.accept import accept

router = APIRouter(prefix="/msg-client", tags=["send"])


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
    return Json(result.body, status_code=result.status_code)
