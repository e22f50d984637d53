"""The one interface every upstream implements, with the errors (app/errors.py) and value types
(app/domain/messages.py) it speaks in, re-exported here for the implementations.

The dispatcher decides retry, failover and failure from the error's class alone: RetryableError,
PermanentError (RouteError: try the next provider), UnknownOutcomeError (never blindly resubmitted).

Upstreams report back through a `ReportSink`: receipts (delivery reports) and inbound (MO)
messages. The sink persists before it returns, so an SMPP provider acknowledges `deliver_sm`
only after its content is safe in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from app.domain.ids import UpstreamId
from app.domain.messages import InboundSms, OutboundMessage, PartProgress, Receipt, SubmitResult
from app.errors import (
    PermanentError,
    ProviderError,
    RetryableError,
    RouteError,
    SinkClosed,
    UnknownOutcomeError,
)

__all__ = [
    "InboundSms", "OutboundMessage", "PartProgress", "PermanentError", "Provider", "ProviderError", "ProviderState",
    "Receipt", "ReportSink", "RetryableError", "RouteError", "SenderQuery", "SinkClosed", "SubmitResult",
    "UnknownOutcomeError",
]


class ReportSink(Protocol):
    async def receipts(self, receipts: Sequence[Receipt]) -> None:
        """Persist (and apply) these receipts; returns once they are committed."""

    async def inbound(self, message: InboundSms) -> None:
        """Persist and queue for forwarding; returns once committed."""


@dataclass(slots=True)
class ProviderState:
    name: str
    type: str
    connected: bool
    in_flight: int = 0
    sessions_up: int = 0
    sessions_total: int = 0
    submitted: int = 0
    errors: int = 0
    last_error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """An upstream. Implementations: providers/smpp (SMPP 3.4), providers/http/* (one per dialect)."""

    name: str
    type: str  # "smpp" | "http"
    max_in_flight: int  # the dispatcher keeps at most this many submit() calls running

    async def start(self, sink: ReportSink) -> None: ...

    async def stop(self) -> None: ...

    def is_available(self) -> bool:
        """False while the provider cannot take messages (no bind up): the route fails over."""

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        """Send one message; raises a ProviderError subclass when it is not accepted."""

    async def query_status(self, upstream_id: UpstreamId) -> Receipt | None:
        """Ask the upstream for a status (dialects with a query API); None if not final/unknown."""

    def state(self) -> ProviderState: ...


@runtime_checkable
class SenderQuery(Protocol):
    """A provider whose status query names the message's sender too (SMPP query_sm asks by message id
    and source address); the poller uses it instead of `query_status` when a provider has it."""

    async def query_status_from(self, upstream_id: UpstreamId, sender: str | None) -> Receipt | None: ...

