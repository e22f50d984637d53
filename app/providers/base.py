"""The one interface every upstream implements, and the errors it may raise.

Error hierarchy (the dispatcher decides retry, failover and failure from the class alone):

    ProviderError                 anything an upstream said no to; `.code` is its status code
    ├── RetryableError            try again later with backoff (throttled, queue full, 5xx, timeout
    │                             before the request was sent, connection refused)
    ├── PermanentError            the message fails with `.code` as ProviderStatusCode
    │   └── RouteError            this provider cannot take it (no route, down): try the next
    │                             provider of the route, fail only when none is left
    └── UnknownOutcomeError       the request left but no answer came: the upstream may have the
                                  message. Never blindly resubmitted (see the dispatcher)

Upstreams report back through a `ReportSink`: receipts (delivery reports) and inbound (MO)
messages. The sink persists before it returns, so an SMPP provider acknowledges `deliver_sm`
only after its content is safe in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid, UpstreamId
from app.domain.status import Status


class SinkClosed(RuntimeError):
    """The report sink is shutting down: the report was not stored (the upstream will send it again)."""


class ProviderError(Exception):
    """An upstream refused or failed a request. `code` is what it said (ProviderStatusCode)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class RetryableError(ProviderError):
    def __init__(self, code: str, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    pass


class RouteError(PermanentError):
    pass


class UnknownOutcomeError(ProviderError):
    pass


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What a provider needs to send one message to one destination."""

    sid: MessageSid
    to: str  # E.164 with a leading +
    sender: str | None  # None: the provider's default_from
    body: str
    encoding: Encoding
    long_message_mode: LongMessageMode
    flash: bool = False
    validity_period: int | None = None  # seconds
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The upstream accepted the message; one id per part it will report on (often just one)."""

    upstream_ids: tuple[UpstreamId, ...]
    provider_status_code: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A status report from an upstream about one of our parts, identified by its upstream id."""

    provider: str | None  # None when the reporter is not known (e.g. a webhook)
    upstream_id: str
    status: Status
    provider_status_code: str | None
    source: str  # "smpp:<provider>", "webhook", "poll:<provider>"
    error_code: str | None = None
    done_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # vendor TLVs, raw receipt text


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A mobile-originated message, already reassembled when it came in parts."""

    source: str  # "webhook" or the provider's name
    upstream_sid: str
    from_number: str
    to_number: str
    body: str
    extra: dict[str, Any] = field(default_factory=dict)


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


class BatchProvider(Provider, Protocol):
    """A provider whose API takes many destinations in one request (websmpp, bulksms).

    The dispatcher hands it a batch; it groups messages with the same text, sender and encoding into
    as few requests as the API allows and answers one result per message, in order.
    """

    async def submit_many(
        self, messages: Sequence[OutboundMessage]
    ) -> list[SubmitResult | ProviderError]: ...
