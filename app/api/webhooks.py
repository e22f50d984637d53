"""Webhooks from upstream gateways (form-encoded, contract §2): inbound SMS and delivery status."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData

from app.api.deps import AppContext, Ctx
from app.api.responses import Json
from app.api.schemas import error_responses
from app.domain.ids import UpstreamId
from app.domain.messages import InboundSms, Receipt
from app.domain.status import WEBHOOK_STATUS
from app.domain.text import storable
from app.errors import BadRequest
from app.services.inbound import receive_inbound
from app.services.sink import commit_reports

router = APIRouter(prefix="/msg-client", tags=["webhooks"])

# The column sizes of inbound_message / message_part / kept_receipt (app/db/tables.py): a longer
# value is refused with a 400 naming the field, not by the database with a 500.
MAX_UPSTREAM_ID = 100
MAX_NUMBER = 40
MAX_ERROR_CODE = 40


def _form_body(properties: dict[str, Any], required: list[str], *alternatives: tuple[str, ...]) -> dict[str, Any]:
    """The OpenAPI request body of a webhook; each of `alternatives` names fields one of which is required."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required,
                              "additionalProperties": {"type": "string"}}
    if alternatives:
        schema["allOf"] = [{"anyOf": [{"required": [name]} for name in names]} for names in alternatives]
    return {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": schema}}, "required": True}}


_RECEIVE_BODY = _form_body({
    "Body": {"type": "string", "description": "the text"},
    "From": {"type": "string", "maxLength": MAX_NUMBER, "description": "sender number or alphanumeric id"},
    "To": {"type": "string", "maxLength": MAX_NUMBER, "description": "our number"},
    "SmsSid": {"type": "string", "maxLength": MAX_UPSTREAM_ID,
               "description": "the upstream's id (or `MessageSid` / `SmsMessageSid`)"},
}, ["Body", "From", "To"], ("SmsSid", "MessageSid", "SmsMessageSid"))

_STATUS_BODY = _form_body({
    "MessageSid": {"type": "string", "maxLength": MAX_UPSTREAM_ID,
                   "description": "the id the upstream gave our message (or `SmsSid`)"},
    "SmsStatus": {"type": "string", "enum": sorted(WEBHOOK_STATUS), "description": "or `MessageStatus`"},
    "MessageStatus": {"type": "string", "enum": sorted(WEBHOOK_STATUS)},
    "ErrorCode": {"type": "string", "maxLength": MAX_ERROR_CODE},
}, [], ("MessageSid", "SmsSid"), ("SmsStatus", "MessageStatus"))


async def _form(request: Request, ctx: Ctx) -> tuple[dict[str, Any], str | None]:
    """The form's fields, once the webhook's authentication passed (before anything else is judged), and
    the Twilio provider whose signature passed (None: another mode)."""
    ctype = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" not in ctype and "multipart/form-data" not in ctype:
        ctx.webhook_auth.check(request, {}, ctx.settings.public_url)
        raise BadRequest("the body must be application/x-www-form-urlencoded", code="invalid_body")
    # The whole body first: one sent without Content-Length that passes the size limit is then a 413 from
    # the middleware, not a 400 from the form parser's own limit on one field (1 MiB).
    await request.body()
    try:
        form: FormData = await request.form()
    except Exception as exc:  # a malformed multipart body, a field over the form parser's part size
        detail = getattr(exc, "detail", None) or type(exc).__name__
        raise BadRequest(f"unreadable form body: {detail}", code="invalid_body") from None
    fields: dict[str, Any] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            fields.setdefault(k, v)
    signed_by = ctx.webhook_auth.check(request, fields, ctx.settings.public_url)
    for k, v in fields.items():
        if not (storable(k) and storable(v)):
            raise BadRequest(f"{k!r} must not contain NUL characters", k)
    return fields, signed_by


def _required(fields: dict[str, Any], *names: str, max_length: int | None = None) -> str:
    for name in names:
        value = fields.get(name)
        if value is not None and str(value).strip():
            return _at_most(str(value).strip(), name, max_length)
    also = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""  # name every spelling accepted
    raise BadRequest(f"{names[0]}{also} is required", names[0], code="missing_field")


def _wake_publishers(ctx: AppContext) -> None:
    """The outbox rows just committed go out now, not when the idle publishers next look."""
    if ctx.workers is not None:
        ctx.workers.wake_publishers()


def _at_most(value: str, name: str, max_length: int | None) -> str:
    if max_length is not None and len(value) > max_length:
        raise BadRequest(f"{name} is longer than {max_length} characters", name)
    return value


@router.post("/receive", openapi_extra=_RECEIVE_BODY, responses=error_responses(400, 401, 403, 500),
             summary="Inbound SMS from an upstream gateway")
async def receive(request: Request, ctx: Ctx) -> Json:
    """Fields `Body`, `From`, `To`, `SmsSid` (Twilio's other fields are kept). Stored and forwarded to
    the `inbound-sms` queue once per `SmsSid`; a repeat answers 200 and forwards nothing."""
    fields, _ = await _form(request, ctx)
    upstream_sid = _required(fields, "SmsSid", "MessageSid", "SmsMessageSid", max_length=MAX_UPSTREAM_ID)
    body = fields.get("Body")
    if body is None:
        raise BadRequest("Body is required", "Body", code="missing_field")
    msg = InboundSms(
        source="webhook", upstream_sid=upstream_sid, from_number=_required(fields, "From", max_length=MAX_NUMBER),
        to_number=_required(fields, "To", max_length=MAX_NUMBER), body=str(body),
        extra={k: v for k, v in fields.items() if k not in ("Body", "From", "To", "SmsSid")},
    )
    sid, new = await receive_inbound(ctx.sessions, msg, ctx.settings)  # committed: the upstream's 200 follows
    _wake_publishers(ctx)
    return Json({"Sid": sid, "SmsSid": upstream_sid, "Duplicate": not new})


@router.post("/delivery-notification", openapi_extra=_STATUS_BODY, responses=error_responses(400, 401, 403, 500),
             summary="Delivery status from an upstream gateway")
async def delivery_notification(request: Request, ctx: Ctx) -> Json:
    """Fields `MessageSid` (the upstream's id for our message), `SmsStatus` or `MessageStatus`, optional
    `ErrorCode`. A report for an id not known yet is kept and applied when the id appears. One signed
    with a Twilio provider's `auth_token` applies only to messages sent through that provider."""
    fields, signed_by = await _form(request, ctx)
    upstream_id = _required(fields, "MessageSid", "SmsSid", max_length=MAX_UPSTREAM_ID)
    word = _required(fields, "SmsStatus", "MessageStatus").lower()  # Twilio sends both, with one value
    status = WEBHOOK_STATUS.get(word)
    if status is None:
        known = ", ".join(sorted(WEBHOOK_STATUS))
        raise BadRequest(f"unknown status {word!r} (known: {known})", "SmsStatus", code="invalid_field")
    error_code = _at_most((fields.get("ErrorCode") or "").strip(), "ErrorCode", MAX_ERROR_CODE) or None
    receipt = Receipt(provider=signed_by, upstream_id=UpstreamId(upstream_id), status=status,
                      provider_status_code=error_code or word, source="webhook", error_code=error_code)
    wake = partial(_wake_publishers, ctx)
    await commit_reports(ctx.sessions, [receipt], ctx.settings, ctx.metrics, wake)  # the upstream's 200 follows
    wake()  # not only for a final status: `sent` writes a StatusCallback row too
    return Json({"MessageSid": upstream_id, "Status": status.value})
