"""The body of POST /msg-client/send: one orjson parse, and a cheap check for the common shape.

`command_from` answers what FastAPI's validation of `SendRequest` would: the same SendCommand for a
valid body, the same 400 for an invalid one. A body whose every field already has its final type
(strings, a list of strings, an int, a bool, null) and passes the text check becomes a SendCommand
directly; anything else — a missing field, a wrong type, a value pydantic would coerce (`"60"`,
`1.0`, `"true"`) — goes through the pydantic model, which then decides exactly as it does on the
documented route. tests/unit/test_send_body.py compares the two over many bodies.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import ValidationError

from app.api.errors import from_validation
from app.api.schemas import SendRequest
from app.domain.commands import SendCommand
from app.domain.text import storable

# The optional text fields of SendRequest (To and Body are required; ValidityPeriod and Flash are not text).
_OPTIONAL_TEXT = ("From", "channel", "SendAt", "Encoding", "LongMessageMode", "StatusCallback")


def is_json(content_type: str | None) -> bool:
    # As FastAPI decides: application/json or application/*+json, parameters ignored.
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def parse(raw: bytes, content_type: str | None) -> Any:
    """The JSON value of the body; the 400 FastAPI gives for an empty, non-JSON or unparsable one."""
    if not raw:
        raise from_validation([{"type": "missing", "loc": ("body",)}])
    if not is_json(content_type):
        raise from_validation([{"type": "model_attributes_type", "loc": ("body",)}])
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # What orjson refuses, FastAPI's json.loads may take (UTF-16/32 bodies, an encoded surrogate that
        # the field check then names): decide as it would, on this rare path only.
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise from_validation([{"type": "json_invalid", "loc": ("body", 0)}]) from None


def _text(value: Any) -> bool:
    return type(value) is str and storable(value)


def fast_command(data: Any) -> SendCommand | None:
    """The SendCommand of a body that needs no coercion and no error; None: ask the pydantic model."""
    if type(data) is not dict:
        return None
    to: Any = data.get("To")
    body: Any = data.get("Body")
    if not _text(body):
        return None
    if type(to) is list:
        if not all(_text(item) for item in to):
            return None
    elif not _text(to):
        return None
    for name in _OPTIONAL_TEXT:
        value = data.get(name)
        if value is not None and not _text(value):
            return None
    validity = data.get("ValidityPeriod")
    if validity is not None and type(validity) is not int:
        return None
    flash = data.get("Flash", False)
    if type(flash) is not bool:
        return None
    get = data.get
    return SendCommand(To=list(to) if type(to) is list else to, Body=body, From=get("From"), channel=get("channel"),
                       SendAt=get("SendAt"), ValidityPeriod=validity, Encoding=get("Encoding"),
                       LongMessageMode=get("LongMessageMode"), Flash=flash, StatusCallback=get("StatusCallback"))


def command_from(data: Any) -> SendCommand:
    """The SendCommand of a parsed body; the 400 of its first invalid field."""
    command = fast_command(data)
    if command is not None:
        return command
    try:
        req = SendRequest.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc.errors()) from None
    return SendCommand(**req.model_dump())
