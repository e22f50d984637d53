"""Commands the API hands to the services: plain values, with no web framework in them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SendCommand:
    """A POST /msg-client/send as the caller wrote it, not yet validated (services/accept.py does).

    The fields keep the contract's names (`To`, `Body`, …) so that an error names the field the caller
    sent, and so that the Idempotency-Key fingerprint is the request's own keys and values."""

    To: str | list[str]
    Body: str
    From: str | None = None
    channel: str | None = None
    SendAt: str | None = None
    ValidityPeriod: int | None = None
    Encoding: str | None = None
    LongMessageMode: str | None = None
    Flash: bool = False
    StatusCallback: str | None = None
