"""Request and response bodies of the HTTP API, with the contract's key style (`To`, `Body`, …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from app.domain.text import storable


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

    # `json_schema_extra` documents the contract's limits in /openapi.json without changing what is
    # accepted: plan() checks them, case-insensitively, and names the field in its 400.
    To: str | list[str] = Field(
        description="E.164 destination (`+` optional); a list or comma-separated string of up to 10,000"
    )
    Body: str = Field(description="message text, any Unicode; long texts are segmented",
                      json_schema_extra={"minLength": 1})
    From: str | None = Field(default=None, description="numeric up to 15 digits or alphanumeric up to 11",
                             json_schema_extra={"pattern": r"^(\+?[0-9]{1,15}|[A-Za-z0-9 .&_-]{1,11})$"})
    channel: str | None = Field(default=None, description="route name; the default route when absent")
    SendAt: str | None = Field(default=None, description="ISO-8601 time with offset: send then",
                               json_schema_extra={"format": "date-time"})
    ValidityPeriod: int | None = Field(default=None, description="seconds the upstream may keep trying",
                                       json_schema_extra={"minimum": 1, "maximum": 31 * 24 * 3600})  # 31 days
    Encoding: str | None = Field(default=None, description=(
        "auto (default: GSM-7 when every character is in GSM 03.38 + extension table, else UCS-2), gsm7, "
        "latin1 (only where every provider of the route accepts it; never with Flash over SMPP), ucs2"),
                                 json_schema_extra={"enum": ["auto", "gsm7", "latin1", "ucs2", None]})
    LongMessageMode: str | None = Field(
        default=None, description="split (default), split_sar, payload, cut",
        json_schema_extra={"enum": ["split", "split_sar", "payload", "cut", None]})
    Flash: bool = Field(default=False, description="class-0 message")
    StatusCallback: str | None = Field(
        default=None, description="http(s) URL for Twilio-style status callbacks: no userinfo, a public "
                                  "address unless the operator allows the network (SMSGW_CALLBACK_ALLOW_NETWORKS)",
        json_schema_extra={"format": "uri", "maxLength": 2048})

    @field_validator("ValidityPeriod", mode="before")
    @classmethod
    def _json_number(cls, value: Any) -> Any:
        # A JSON number only: `true` is not 1 s and `"60"` is not 60 (pydantic's lax mode takes both).
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PydanticCustomError("int_type", "must be a JSON number of seconds")
        if isinstance(value, float) and not value.is_integer():
            raise PydanticCustomError("int_type", "must be a whole number of seconds")
        return int(value)

    @field_validator("Flash", mode="before")
    @classmethod
    def _json_bool(cls, value: Any) -> Any:
        # JSON true or false only (contract §2: a bool): pydantic's lax mode takes "yes", "on", "0" and 1,
        # and a client that sent "no" must not get a flash message.
        if not isinstance(value, bool):
            raise PydanticCustomError("bool_type", "must be JSON true or false")
        return value

    @field_validator("To", "Body", "From", "channel", "SendAt", "Encoding", "LongMessageMode", "StatusCallback")
    @classmethod
    def _storable(cls, value: str | list[str] | None) -> str | list[str] | None:
        # Refused here, before the database refuses it with a 500 (or poisons a group commit).
        items = value if isinstance(value, list) else [value]
        if not all(storable(v) for v in items if v is not None):
            raise PydanticCustomError("invalid_text", "must not contain NUL characters or unpaired surrogates")
        return value


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
