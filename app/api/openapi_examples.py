"""Examples for every operation of the OpenAPI document: request bodies, 200 answers and each declared
error, in the contract's shape. Applied to the generated document by `install_openapi`, so the route
modules keep their code readable; the examples are the real answers of the real handlers.

FastAPI's default 422 entries are removed: validation errors are answered 400 in the error shape.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

SID = "SM3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c"
NOW = "2026-11-22T09:00:00.123456+00:00"


def _error(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


ERRORS: dict[str, dict[str, dict[str, Any]]] = {
    "400": {
        "invalid_field": {"summary": "A field is wrong",
                          "value": _error("invalid_field", "'+1-555-CALL-NOW' is not a phone number", "To")},
        "missing_field": {"summary": "A field is missing", "value": _error("missing_field", "Body is empty", "Body")},
        "invalid_body": {"summary": "Not JSON", "value": _error("invalid_body", "the body is not valid JSON")},
    },
    "401": {"unauthorized": {"summary": "No or unknown API key / webhook credentials",
                             "value": _error("unauthorized", "missing or unknown API key")}},
    "403": {"webhook_auth_failed": {"summary": "Webhook credentials or signature wrong",
                                    "value": _error("webhook_auth_failed", "webhook authentication failed")}},
    "404": {"not_found": {"summary": "No such message", "value": _error("not_found", f"no message {SID}")}},
    "409": {"conflict": {"summary": "Too late to cancel",
                         "value": _error("conflict", "a message in status 'sent' cannot be canceled")}},
    "413": {"payload_too_large": {"summary": "Body over SMSGW_MAX_BODY_BYTES",
                                  "value": _error("payload_too_large", "the body is larger than 2097152 bytes")}},
    "429": {"rate_limited": {"summary": "Over the key's rate limit (see Retry-After)",
                             "value": _error("rate_limited", "rate limit of 50/s exceeded; retry after 1 s")}},
    "500": {"internal_error": {"summary": "A bug (the request id finds it in the logs)",
                               "value": _error("internal_error", "internal error (request id 8707c673f563db8d)")}},
    "503": {"unavailable": {"summary": "The database is unavailable; nothing was stored",
                            "value": _error("unavailable", "the database is unavailable; retry shortly")}},
}

MESSAGE = {
    "MessageSid": SID, "Status": "delivered", "To": "+96170123456", "From": "Acme", "Body": "Your code is 4821",
    "Segments": 1, "Encoding": "GSM7", "Channel": "smpp", "Provider": "smsc-main", "UpstreamIds": ["1a203a923d000"],
    "ProviderStatusCode": "DELIVRD", "ErrorCode": None, "CreatedAt": NOW, "UpdatedAt": NOW, "SendAt": None,
    "History": [
        {"Status": "queued", "At": NOW, "Source": "api", "Applied": True, "ProviderStatusCode": None, "Detail": None},
        {"Status": "sent", "At": NOW, "Source": "provider:smsc-main", "Applied": True, "ProviderStatusCode": None,
         "Detail": None},
        {"Status": "delivered", "At": NOW, "Source": "smpp:smsc-main", "Applied": True,
         "ProviderStatusCode": "DELIVRD", "Detail": None},
    ],
}

LISTED = {k: v for k, v in MESSAGE.items() if k != "History"}  # list items carry no history

REQUESTS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("post", "/msg-client/send"): {
        "single": {"summary": "One recipient", "value": {"To": "+96170123456", "Body": "Your code is 4821",
                                                         "From": "Acme"}},
        "several": {"summary": "Several recipients (up to 10,000)",
                    "value": {"To": ["+96170123456", "+96171234567"], "Body": "Branch closed today", "From": "Acme",
                              "StatusCallback": "https://crm.example.com/sms-status"}},
        "scheduled": {"summary": "Scheduled, with validity",
                      "value": {"To": "+96170123456", "Body": "Reminder: appointment at 10:00",
                                "SendAt": "2026-12-01T08:00:00+02:00", "ValidityPeriod": 3600}},
        "unicode": {"summary": "Unicode (UCS-2), long, over HTTP",
                    "value": {"To": "+96170123456", "Body": "مرحبا! رمزك هو 4821 — صالح لمدة 10 دقائق",
                              "channel": "http", "LongMessageMode": "split_sar"}},
    },
    ("post", "/msg-client/receive"): {
        "inbound": {"summary": "An inbound SMS (Twilio-style form)",
                    "value": {"SmsSid": "SM0123456789abcdef0123456789abcdef", "From": "+96170999888",
                              "To": "+96170000001", "Body": "STOP"}},
    },
    ("post", "/msg-client/delivery-notification"): {
        "delivered": {"summary": "A delivery status for the upstream's id",
                      "value": {"MessageSid": "SM9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d", "SmsStatus": "delivered"}},
        "failed": {"summary": "A failure with its code",
                   "value": {"MessageSid": "SM9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d", "MessageStatus": "undelivered",
                             "ErrorCode": "30003"}},
    },
}

OK: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("post", "/msg-client/receive"): {"stored": {"summary": "Stored once (a repeated SmsSid answers Duplicate: true)",
                                                 "value": {"Sid": "MMf8ed778cc98380fa85ba846cb6df10e5",
                                                           "SmsSid": "SM0123456789abcdef0123456789abcdef",
                                                           "Duplicate": False}}},
    ("post", "/msg-client/delivery-notification"): {
        "recorded": {"summary": "Recorded (applied, or kept until the id is known)",
                     "value": {"MessageSid": "sm9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d", "Status": "delivered"}}},
    ("get", "/msg-client/messages/{sid}"): {"message": {"summary": "A message with its history", "value": MESSAGE}},
    ("delete", "/msg-client/messages/{sid}"): {
        "canceled": {"summary": "Canceled", "value": {**MESSAGE, "Status": "canceled", "ProviderStatusCode": None,
                                                      "UpstreamIds": [], "Provider": None, "History": []}}},
    ("get", "/msg-client/messages"): {"page": {"summary": "One page and the cursor of the next",
                                              "value": {"Messages": [LISTED], "NextCursor": "MjAyNi0xMS0yMl..."}}},
    ("get", "/msg-client/providers"): {"providers": {"summary": "Upstreams and their binds", "value": {"Providers": [
        {"name": "smsc-main", "type": "smpp", "dialect": "smpp", "connected": True, "in_flight": 3,
         "sessions_up": 1, "sessions_total": 1, "submitted": 1234, "errors": 0, "last_error": None, "detail": {},
         "running": True}]}}},
    ("get", "/health/live"): {"live": {"summary": "The process answers", "value": {"status": "ok"}}},
    ("get", "/health/ready"): {"ready": {"summary": "Ready (503 with the same detail when not)", "value": {
        "status": "ok", "checks": {"database": {"ok": True},
                                   "provider:smsc-main": {"ok": True, "connected": True, "sessions_up": 1,
                                                          "in_flight": 0},
                                   "broker": {"ok": True, "connected": True},
                                   "outbox": {"ok": True, "lag_seconds": 0.04}}}}},
}

NOT_READY = {"status": "unavailable", "checks": {
    "database": {"ok": True}, "provider:smsc-main": {"ok": False, "connected": False, "sessions_up": 0, "in_flight": 0},
    "broker": {"ok": True, "connected": True}, "outbox": {"ok": True, "lag_seconds": 0.0}}}

METRICS_EXAMPLE = ('# HELP smsgw_message_status_total status changes applied\n'
                   '# TYPE smsgw_message_status_total counter\n'
                   'smsgw_message_status_total{provider="smsc-main",status="delivered"} 1234.0\n')


def _examples(content: dict[str, Any], examples: dict[str, dict[str, Any]]) -> None:
    for media in content.values():
        media.setdefault("examples", copy.deepcopy(examples))


def add_examples(spec: dict[str, Any]) -> dict[str, Any]:
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            responses: dict[str, Any] = op.get("responses", {})
            responses.pop("422", None)
            key = (method, path)
            if key in REQUESTS and "requestBody" in op:
                _examples(op["requestBody"].setdefault("content", {}), REQUESTS[key])
            for code, response in responses.items():
                if code in ERRORS:
                    content = response.setdefault("content", {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ErrorBody"}}})
                    _examples(content, ERRORS[code])
                elif code == "200":
                    content = response.setdefault("content", {"application/json": {"schema": {}}})
                    if path == "/metrics":
                        response["content"] = {"text/plain": {"schema": {"type": "string"},
                                                              "example": METRICS_EXAMPLE}}
                    elif key in OK:
                        _examples(content, OK[key])
            if key == ("get", "/health/ready"):
                responses.setdefault("503", {"description": "not ready: the same detail, the failing check false",
                                             "content": {"application/json": {"example": NOT_READY}}})
    return spec


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, with the examples, and serve that."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_examples(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
