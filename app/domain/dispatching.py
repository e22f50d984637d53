"""What the dispatcher works with: a message it claimed, and the outcome of one attempt to submit it.

Plain values, shared by the dispatcher (app/dispatch/), which produces them, and the service that
records them (app/services/dispatching.py), which turns them into rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from app.domain.ids import MessageSid
from app.domain.messages import PartProgress, SubmitResult


class OutcomeKind(StrEnum):
    SENT = "sent"  # the upstream accepted every part
    RETRY = "retry"  # not now: due again after a backoff (or at once on another bind)
    FAILED = "failed"  # for good: the message fails and gets its report


@dataclass(slots=True)
class Claimed:
    """A message taken by this dispatcher, with what a provider needs to send it."""

    sid: MessageSid
    to: str
    sender: str | None
    body: str
    encoding: str
    mode: str
    flash: bool
    validity: int | None
    channel: str
    attempts: int
    callback: str | None
    was_scheduled: bool
    progress: PartProgress | None = None  # parts accepted on an earlier attempt


@dataclass(slots=True)
class Outcome:
    msg: Claimed
    kind: OutcomeKind
    provider: str | None
    result: SubmitResult | None = None
    code: str | None = None
    detail: str | None = None
    retry_after: float | None = None
    progress: PartProgress | None = None  # how far a long message got on this attempt, if it stopped part-way

    def accepted_before(self) -> set[int]:
        """Part numbers that already have their row from an earlier attempt."""
        return set(self.msg.progress.accepted) if self.msg.progress is not None else set()


class HandOff(Protocol):
    """A dispatcher that takes messages straight from the accept path (services/accept_batch.py): the
    rows are inserted already claimed by it (`sending`, leased to `owner`), so no claim UPDATE is
    written for them, and it starts sending them once they are committed."""

    owner: str
    lease_seconds: float

    def room(self) -> int:
        """How many more messages it can take now (0 while stopping)."""

    def take(self, claimed: list[Claimed]) -> None:
        """Send these (committed, leased to `owner`)."""
