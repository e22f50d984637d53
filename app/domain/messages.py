"""The values that cross the boundary between the gateway and its upstreams: a message to send, the
upstream's answer, a status report about one of our parts, and an inbound (MO) message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid, UpstreamId
from app.domain.status import Status


@dataclass(slots=True)
class PartProgress:
    """How far a long message got upstream before an attempt stopped: the provider that has its first
    parts, the concatenation reference they carry, and the id of each part it accepted (by part number,
    from 1). The next attempt sends only the other parts, with the same reference, to the same provider."""

    provider: str
    reference: int | None
    total: int
    accepted: Mapping[int, UpstreamId] = field(default_factory=dict)


@dataclass(slots=True)
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
    progress: PartProgress | None = None  # parts accepted on earlier attempts (long messages)


@dataclass(slots=True)
class SubmitResult:
    """The upstream accepted the message; one id per part it will report on (often just one)."""

    upstream_ids: tuple[UpstreamId, ...]
    provider_status_code: str | None = None


@dataclass(slots=True)
class Receipt:
    """A status report from an upstream about one of our parts, identified by its upstream id."""

    provider: str | None  # None when the reporter is not known (e.g. a webhook)
    upstream_id: UpstreamId  # as the reporter wrote it; with provider None it may be our MessageSid (webhooks)
    status: Status
    provider_status_code: str | None
    source: str  # "smpp:<provider>", "webhook", "poll:<provider>"
    error_code: str | None = None
    done_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # vendor TLVs, raw receipt text
    # Set when the upstream answered this id's submit moments ago: the part is that new submit, not
    # an older one with the same id (an SMSC that restarted its counter), even if its row is not written yet.
    submitted_after: datetime | None = None


@dataclass(slots=True)
class InboundSms:
    """A mobile-originated message, already reassembled when it came in parts."""

    source: str  # "webhook" or the provider's name
    upstream_sid: str
    from_number: str
    to_number: str
    body: str
    extra: dict[str, Any] = field(default_factory=dict)
