"""Webhooks from upstream gateways (form-encoded, contract §2): inbound SMS and delivery status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData

from app.api.deps import Ctx
from app.api.errors import BadRequest
from app.api.responses import Json
from app.api.schemas import error_responses
from app.domain.status import WEBHOOK_STATUS
from app.providers.base import InboundSms, Receipt
from app.services.inbound import store_inbound
from app.services.receipts import apply_receipts

router = APIRouter(prefix="/msg-client", tags=["webhooks"])

_FORM_BODY = {
    "requestBody": {
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        "required": True,
    }
}


async def _form(request: Request, ctx: Ctx) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" not in ctype and "multipart/form-data" not in ctype:
        raise BadRequest("the body must be application/x-www-form-urlencoded", code="invalid_body")
    try:
        form: FormData = await request.form()
    except Exception as exc:  # a malformed multipart body
        raise BadRequest(f"unreadable form body: {type(exc).__name__}", code="invalid_body") from None
    fields: dict[str, Any] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            fields.setdefault(k, v)
    ctx.webhook_auth.check(request, fields, ctx.settings.public_url)
    return fields


def _required(fields: dict[str, Any], *names: str) -> str:
    for name in names:
        value = fields.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    raise BadRequest(f"{names[0]} is required", names[0], code="missing_field")


@router.post("/receive", openapi_extra=_FORM_BODY, responses=error_responses(400, 401, 403, 500),
             summary="Inbound SMS from an upstream gateway")
async def receive(request: Request, ctx: Ctx) -> Json:
    """Fields `Body`, `From`, `To`, `SmsSid` (Twilio's other fields are kept). Stored and forwarded to
    the `inbound-sms` queue once per `SmsSid`; a repeat answers 200 and forwards nothing."""
    fields = await _form(request, ctx)
    upstream_sid = _required(fields, "SmsSid", "MessageSid", "SmsMessageSid")
    body = fields.get("Body")
    if body is None:
        raise BadRequest("Body is required", "Body", code="missing_field")
    msg = InboundSms(
        source="webhook", upstream_sid=upstream_sid, from_number=_required(fields, "From"),
        to_number=_required(fields, "To"), body=str(body),
        extra={k: v for k, v in fields.items() if k not in ("Body", "From", "To", "SmsSid")},
    )
    async with ctx.sessions() as session:
        sid, new = await store_inbound(session, msg, ctx.settings)
        await session.commit()
    return Json({"Sid": sid, "SmsSid": upstream_sid, "Duplicate": not new})


@router.post("/delivery-notification", openapi_extra=_FORM_BODY, responses=error_responses(400, 401, 403, 500),
             summary="Delivery status from an upstream gateway")
async def delivery_notification(request: Request, ctx: Ctx) -> Json:
    """Fields `MessageSid` (the upstream's id for our message), `SmsStatus` or `MessageStatus`, optional
    `ErrorCode`. A report for an id not known yet is kept and applied when the id appears."""
    fields = await _form(request, ctx)
    upstream_id = _required(fields, "MessageSid", "SmsSid")
    word = _required(fields, "MessageStatus", "SmsStatus").lower()
    status = WEBHOOK_STATUS.get(word)
    if status is None:
        known = ", ".join(sorted(WEBHOOK_STATUS))
        raise BadRequest(f"unknown status {word!r} (known: {known})", "SmsStatus", code="invalid_field")
    error_code = (fields.get("ErrorCode") or "").strip() or None
    receipt = Receipt(provider=None, upstream_id=upstream_id, status=status,
                      provider_status_code=error_code or word, source="webhook", error_code=error_code)
    async with ctx.sessions() as session:
        await apply_receipts(session, [receipt], ctx.settings)
        await session.commit()
    return Json({"MessageSid": upstream_id, "Status": status.value})
