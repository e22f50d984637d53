"""What a batch of matched receipts changes, decided without the database.

`decide()` takes the receipts already matched to parts (services/receipts.py does the matching and the
I/O), the parts' and messages' current state, and returns every write the batch implies: part updates,
message updates, history rows, outbox rows. The caller writes them with one statement each
(app/db/bulk.py). Rules (contract §3):

- a part moves only forward (`advances`); its vendor TLVs are merged in when it does;
- a message's status is the aggregate of its parts' (`aggregate_parts`), or the reported status itself
  for a report that named our own MessageSid; it too moves only forward;
- every report is a history row, `applied` false when it changed nothing (a duplicate, a late one),
  except the report that gives the message its final status: that entry is the message row's own
  `done_at` / `done_source` / `done_detail` (no status_event row on the hot path);
- a message of one part keeps its receipt's outcome on the message row only: its part row, which holds
  the upstream id for matching, is not written again, unless a status poll or what the report carries
  besides the SMPP receipt text (vendor TLVs, a webhook's fields) needs it; the text's own fields
  (stat, err, dates) are what the message row already says;
- what a change writes to the outbox is decided in services/status_change.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain.messages import Receipt
from app.domain.status import REPORTED, Status, advances, aggregate_parts
from app.services.status_change import Recipient, history_row, outbox_rows

# What a report may carry that the message row already says (the SMPP receipt text's fields).
_ON_THE_MESSAGE = frozenset({"receipt"})


@dataclass(slots=True)
class PartState:
    """A message_part row's changeable columns."""

    id: int
    message_sid: str
    status: Status
    provider_status_code: str | None = None
    error_code: str | None = None
    tlvs: dict[str, Any] | None = None
    done_at: datetime | None = None
    next_poll_at: datetime | None = None

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status.value, "provider_status_code": self.provider_status_code,
                "error_code": self.error_code, "tlvs": self.tlvs, "done_at": self.done_at,
                "next_poll_at": self.next_poll_at}


@dataclass(slots=True)
class MessageState:
    """A message row's changeable columns, and what its reports say about it."""

    sid: str
    status: Status
    recipient: Recipient
    provider_status_code: str | None
    error_code: str | None
    updated_at: datetime | None = None
    done_at: datetime | None = None  # set with the final status: its history entry (see Message.sent_at)
    done_source: str | None = None
    done_detail: str | None = None

    def row(self) -> dict[str, Any]:
        # A message a report moved is no longer leased or due, whatever it was doing.
        return {"sid": self.sid, "status": self.status.value, "provider_status_code": self.provider_status_code,
                "error_code": self.error_code, "updated_at": self.updated_at, "lease_owner": None,
                "lease_expires_at": None, "due_at": None, "done_at": self.done_at, "done_source": self.done_source,
                "done_detail": self.done_detail}


@dataclass(slots=True)
class Changes:
    parts: dict[int, PartState] = field(default_factory=dict)  # the parts changed, by id
    messages: dict[str, MessageState] = field(default_factory=dict)  # the messages changed, by sid
    history: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)
    # (status, provider) → messages, for each change applied (metrics)
    counts: Counter[tuple[Status, str]] = field(default_factory=Counter)
    # (sid, status after the report, reported, applied, receipt) for the "status" log line
    applied: list[tuple[str, Status, Receipt, bool]] = field(default_factory=list)


def decide(
    matched: Sequence[tuple[Receipt, Sequence[PartState]]],
    direct: Sequence[tuple[str, Receipt]],
    messages: dict[str, MessageState],
    parts_of: dict[str, list[PartState]],
    *,
    now: datetime,
    report_queue: str,
) -> Changes:
    """The writes for `matched` (receipts with the parts they name) and `direct` (receipts naming one of
    our MessageSids). `messages` and `parts_of` hold every message (and all its parts) those touch; they
    are updated in place, so several receipts for one message in a batch build on each other."""
    out = Changes()
    for r, hit in matched:
        for part in hit:
            if not advances(part.status, r.status):
                continue
            part.status = r.status
            part.provider_status_code = r.provider_status_code
            part.error_code = r.error_code
            if r.extra:
                part.tlvs = {**(part.tlvs or {}), **r.extra}
            polled = part.next_poll_at is not None
            if r.status in REPORTED:
                part.done_at = r.done_at or now
                part.next_poll_at = None
            if polled or set(r.extra) - _ON_THE_MESSAGE or len(parts_of[part.message_sid]) > 1:
                out.parts[part.id] = part
        for sid in dict.fromkeys(p.message_sid for p in hit):
            _settle(out, messages[sid], r, aggregate_parts(p.status for p in parts_of[sid]), now, report_queue)
    for sid, r in direct:
        _settle(out, messages[sid], r, r.status, now, report_queue)
    return out


def _settle(out: Changes, msg: MessageState, r: Receipt, new: Status, now: datetime, report_queue: str) -> None:
    applied = advances(msg.status, new)
    detail = r.error_code and f"err {r.error_code}"
    if applied and new in REPORTED and new is r.status:
        msg.done_at, msg.done_source, msg.done_detail = now, r.source, detail  # its history entry
    else:
        out.history.append(history_row(msg.sid, r.status, r.source, now, applied=applied,
                                       code=r.provider_status_code, detail=detail))
    out.applied.append((msg.sid, new if applied else msg.status, r, applied))
    if not applied:
        return
    out.counts[(new, msg.recipient.provider or "-")] += 1
    msg.status = new
    if r.provider_status_code:
        msg.provider_status_code = r.provider_status_code
    if r.error_code and new is not Status.DELIVERED:
        msg.error_code = r.error_code
    msg.updated_at = now
    out.messages[msg.sid] = msg
    if new in REPORTED:
        out.finals.append(msg.sid)
    out.outbox += outbox_rows(msg.recipient, new, report_queue=report_queue,
                              provider_status_code=msg.provider_status_code, error_code=msg.error_code, at=now)
