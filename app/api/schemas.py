"""Request and response bodies of the HTTP API, with the contract's key style (`To`, `Body`, …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SendRequest(BaseModel):
    """POST /msg-client/send. Unknown keys are ignored, as Twilio's API does."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"To": "+96170123456", "Body": "Your code is 1234", "From": "Acme", "channel": "smpp"},
                {"To": ["+96170123456", "+96171123456"], "Body": "Bulk text",
                 "SendAt": "2026-12-01T09:00:00+02:00"},
            ]
        },
    )

    To: str | list[str] = Field(
        description="E.164 destination (`+` optional); a list or comma-separated string of up to 10,000"
    )
    Body: str = Field(description="message text, any Unicode; long texts are segmented")
    From: str | None = Field(default=None, description="numeric up to 15 digits or alphanumeric up to 11")
    channel: str | None = Field(default=None, description="route name; the default route when absent")
    SendAt: str | None = Field(default=None, description="ISO-8601 time with offset: send then")
    ValidityPeriod: int | None = Field(default=None, description="seconds the upstream may keep trying")
    Encoding: str | None = Field(default=None, description="auto (default), gsm7, latin1, ucs2")
    LongMessageMode: str | None = Field(default=None, description="split (default), split_sar, payload, cut")
    Flash: bool = Field(default=False, description="class-0 message")
    StatusCallback: str | None = Field(default=None, description="URL for Twilio-style status callbacks")


class SendResult(BaseModel):
    MessageSid: str
    Status: str
    To: str
    Segments: int
    Encoding: str


class BulkSendResult(BaseModel):
    Messages: list[SendResult]


class HistoryEntry(BaseModel):
    Status: str
    At: datetime
    Source: str
    Applied: bool
    ProviderStatusCode: str | None = None
    Detail: str | None = None


class MessageView(BaseModel):
    MessageSid: str
    Status: str
    To: str
    From: str | None
    Body: str
    Segments: int
    Encoding: str
    Channel: str
    Provider: str | None
    UpstreamIds: list[str | None]
    ProviderStatusCode: str | None
    ErrorCode: str | None
    CreatedAt: datetime
    UpdatedAt: datetime
    SendAt: datetime | None
    History: list[HistoryEntry] = Field(default_factory=list)


class MessagePage(BaseModel):
    Messages: list[MessageView]
    NextCursor: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can answer."""
    text = {
        400: "missing or invalid field", 401: "authentication failed", 403: "webhook signature refused",
        404: "not found", 409: "not in a state that allows this", 413: "body too large",
        429: "over the rate limit", 500: "internal error", 503: "temporarily unavailable",
    }
    return {c: {"model": ErrorBody, "description": text.get(c, "error")} for c in codes}
