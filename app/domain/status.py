"""Message states and the rules for moving between them (contract §3).

`scheduled → queued → sending → sent → delivered | undelivered | failed`, plus `canceled`.
A status only moves forward: a late `sent` never overwrites `delivered`, and once a message is
final nothing changes it (later receipts are recorded in the history, not applied).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL: frozenset[Status] = frozenset({Status.DELIVERED, Status.UNDELIVERED, Status.FAILED, Status.CANCELED})
CANCELABLE: frozenset[Status] = frozenset({Status.SCHEDULED, Status.QUEUED})
REPORTED: frozenset[Status] = frozenset({Status.DELIVERED, Status.UNDELIVERED, Status.FAILED})

_RANK: dict[Status, int] = {
    Status.SCHEDULED: 0,
    Status.QUEUED: 1,
    Status.SENDING: 2,
    Status.SENT: 3,
    Status.DELIVERED: 4,
    Status.UNDELIVERED: 4,
    Status.FAILED: 4,
    Status.CANCELED: 4,
}

# Webhook statuses (Twilio's vocabulary and the Connector API's) to ours.
WEBHOOK_STATUS: dict[str, Status] = {
    "accepted": Status.QUEUED,
    "queued": Status.QUEUED,
    "scheduled": Status.SCHEDULED,
    "sending": Status.SENDING,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
}

# SMPP receipt `stat:` words and the commpeak/websmpp query answers.
RECEIPT_STAT: dict[str, Status] = {
    "DELIVRD": Status.DELIVERED,
    "DELIVERED": Status.DELIVERED,
    "EXPIRED": Status.UNDELIVERED,
    "DELETED": Status.UNDELIVERED,
    "UNDELIV": Status.UNDELIVERED,
    "UNDELIVERABLE": Status.UNDELIVERED,
    "UNKNOWN": Status.UNDELIVERED,
    "REJECTD": Status.FAILED,
    "REJECTED": Status.FAILED,
    "ACCEPTD": Status.SENT,
    "ACCEPTED": Status.SENT,
    "ENROUTE": Status.SENT,
    "SENT": Status.SENT,
}

# SMPP 3.4 message_state TLV (0x0427) values to the `stat:` word they stand for.
MESSAGE_STATE_STAT: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}


def rank(status: Status) -> int:
    return _RANK[status]


def is_final(status: Status) -> bool:
    return status in FINAL


def advances(current: Status, new: Status) -> bool:
    """True when `new` moves `current` forward; a final status never moves."""
    if current in FINAL:
        return False
    return _RANK[new] > _RANK[current]


def aggregate_parts(part_statuses: Iterable[Status]) -> Status:
    """A long message's status from its parts' (contract §3).

    Failed or undelivered as soon as any part is; delivered when every part is; otherwise the
    least advanced state among the parts.
    """
    statuses = list(part_statuses)
    if not statuses:
        return Status.SENDING
    if Status.FAILED in statuses:
        return Status.FAILED
    if Status.UNDELIVERED in statuses:
        return Status.UNDELIVERED
    if all(s is Status.DELIVERED for s in statuses):
        return Status.DELIVERED
    pending = [s for s in statuses if s is not Status.DELIVERED]
    return min(pending, key=_RANK.__getitem__)


def report_delivery_status(status: Status) -> str:
    """The `DeliveryStatus` word of the ActiveMQ report (contract §4)."""
    return "DELIVERED" if status is Status.DELIVERED else "FAILED"


@dataclass(slots=True)
class ReportCounts:
    """What applying a batch of reports did, for the metrics: reports matched to a message, reports kept
    for an id not known yet, and each status change applied, by (status, provider)."""

    matched: int = 0
    kept: int = 0
    changes: Counter[tuple[Status, str]] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.matched or self.kept or self.changes)
