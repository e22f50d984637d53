"""The one place that decides what a status change writes besides the message row itself: its history
row, and the outbox rows it causes.

- every status a message reaches, or a report heard about it (applied or not), is one history row;
- a final status (delivered, undelivered, failed) writes the delivery report (contract §4) and, when the
  message has a StatusCallback, a callback;
- `sent` writes a callback only (Twilio calls back on `sent` too); other statuses write nothing more.

The receipt path (services/receipts.py), the dispatcher's outcomes and the receipt-timeout expiry all
call these, so a report looks the same whichever path finalised the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain.status import REPORTED, Status
from app.services import outbox_rows as outbox


@dataclass(slots=True)
class Recipient:
    """What a report or a callback says about the message besides its status."""

    sid: str
    channel: str
    to: str
    sender: str | None
    provider: str | None
    callback: str | None


def history_row(sid: str, status: Status, source: str, at: datetime, *, applied: bool = True,
                code: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """A `status_event` row: `status` as reported by `source`; `applied` false when it changed nothing."""
    return {"message_sid": sid, "status": status.value, "source": source, "applied": applied,
            "provider_status_code": code, "detail": detail, "created_at": at}


def outbox_rows(message: Recipient, status: Status, *, report_queue: str, provider_status_code: str | None,
                error_code: str | None, at: datetime) -> list[dict[str, Any]]:
    """The outbox rows a message reaching `status` causes (none for most statuses)."""
    rows: list[dict[str, Any]] = []
    if status in REPORTED:
        rows.append(outbox.report_event(
            queue=report_queue, message_sid=message.sid, status=status, provider_status_code=provider_status_code,
            channel=message.channel, to=message.to, provider=message.provider, error_code=error_code, at=at))
    if message.callback and (status in REPORTED or status is Status.SENT):
        rows.append(outbox.callback_event(
            url=message.callback, message_sid=message.sid, status=status, to=message.to, sender=message.sender,
            error_code=error_code if status is not Status.SENT else None, at=at))
    return rows
