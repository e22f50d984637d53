"""The bulk HTTP API of seed 001: `GET …/bulksms?username&password&type&dlr&destination&source&message`.

`config.url` is the full endpoint (the seed's path is `/bulksms/bulksms`). One request may carry many
destinations, comma-separated; the reply is one `<code>|<destination>|<message id>` item per
destination (`1701` = accepted), items separated by commas or line breaks. Some servers answer a
request-level error with the bare code; it then applies to every destination of the request.

The seed's `schedulemsg` endpoint is never used: the gateway holds scheduled messages itself until
they are due, so they stay cancelable and failover-able, and the upstream never sees them early.

Reply codes (the seed: only 1709 may be retried, 1715 must never be resubmitted):

    1701                   accepted                 SubmitResult(message id)
    1709                   user validation failed   RetryableError
    1703, 1725, 16, 18     bad credentials, no      RouteError: this account cannot send at all,
                           credit, IP blacklisted/  the message itself is fine, so the route fails
                           not whitelisted          over to its next provider (failed if none)
    anything else          1702 1704-1708 1710 1715 PermanentError with the code as
                           1732 1028 1041 1042 1033 ProviderStatusCode: failed, never resubmitted
                           69 8 and SMPP error codes (1715 included: the seed forbids it)

HTTP statuses and transport errors: the shared table (app/providers/http/common.py).

Delivery reports. The seed has no status query, and the vendor pushes reports (with `dlr=1`) to a
URL agreed with them out of band, in a shape the seed does not give. The gateway's lifecycle for
such a message (README, "bulksms delivery reports"): it stays `sent` until the vendor's report
arrives on `/msg-client/delivery-notification` as `MessageSid=<the 1701 message id>&SmsStatus=
delivered|undelivered|failed[&ErrorCode=…]` (the vendor's push is configured to that shape), and
a message with no report after `receipt_timeout_seconds` becomes `undelivered` (NO_RECEIPT).

Type follows encoding and flash; `Segments` as the seed counts (flash 140 in one message:
app/domain/capability.py, BULKSMS). The upstream concatenates long texts itself, so every
LongMessageMode but `cut` sends the whole text (`cut` truncates it to one message of its type).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from app.config import HttpProviderConfig
from app.domain.capability import BULKSMS
from app.domain.encoding import Encoding, EncodingError, LongMessageMode
from app.domain.ids import UpstreamId
from app.logs import redact
from app.providers import base
from app.providers.base import OutboundMessage, PermanentError, ProviderError, SubmitResult
from app.providers.http.common import BatchHttpProvider, status_error

log = logging.getLogger(__name__)

SUCCESS = "1701"
RETRYABLE_CODES = frozenset({"1709"})
ROUTE_CODES = frozenset({"1703", "1725", "16", "18"})
CODE_TEXT: dict[str, str] = {
    "1701": "submitted", "1702": "invalid URL (a parameter missing or blank)",
    "1703": "invalid username or password", "1704": "invalid type", "1705": "invalid message",
    "1706": "invalid destination", "1707": "invalid source", "1708": "invalid dlr",
    "1709": "user validation failed", "1710": "internal error", "1725": "insufficient credit",
    "1715": "response timeout", "1732": "DND reject", "1028": "spam message", "1041": "duplicate message",
    "1042": "explicit DND destination", "1033": "message template mismatch", "69": "internal error",
    "8": "internal error", "16": "IP blacklisted", "18": "non-whitelisted user IP",
}

MAX_DESTINATIONS = 100  # per request: keeps the URL well under common 8 KiB limits
MAX_DESTINATION_CHARS = 2000

# type = _TYPE[(encoding, flash)]; 3 (reserved) and 4 (WAP push) are never sent.
_TYPE: dict[tuple[Encoding, bool], int] = {
    (Encoding.GSM7, False): 0, (Encoding.GSM7, True): 1, (Encoding.UCS2, False): 2,
    (Encoding.LATIN1, False): 5, (Encoding.UCS2, True): 6, (Encoding.LATIN1, True): 7,
}
_CODE_RE = re.compile(r"(?:\d+|0[xX][0-9A-Fa-f]+)")
_ITEM_SEP = re.compile(r"[,\r\n]+")


def message_type(encoding: Encoding, flash: bool) -> int:
    return _TYPE[(encoding, flash)]


@dataclass(frozen=True, slots=True)
class ReplyItem:
    code: str
    destination: str | None
    message_id: str | None


class BadReply(ValueError):
    pass


def parse_reply(text: str) -> list[ReplyItem]:
    """`1701|9613…|id` items separated by commas or newlines; a bare `<code>` is allowed."""
    items: list[ReplyItem] = []
    for raw in _ITEM_SEP.split(text.lstrip("\ufeff").strip()):
        fields = [f.strip() for f in raw.strip().split("|")]
        if not fields[0]:
            continue
        if not _CODE_RE.fullmatch(fields[0]) or len(fields) > 3:
            raise BadReply(raw[:80])
        dest = fields[1] if len(fields) > 1 and fields[1] else None
        mid = fields[2] if len(fields) > 2 and fields[2] else None
        items.append(ReplyItem(fields[0], dest, mid))
    if not items:
        raise BadReply("empty reply")
    return items


def error_for(code: str) -> ProviderError:
    """The ProviderError a non-1701 reply code stands for (see the module table)."""
    text = CODE_TEXT.get(code, "upstream error")
    if code in RETRYABLE_CODES:
        return base.RetryableError(code, text)
    if code in ROUTE_CODES:
        return base.RouteError(code, text)
    return PermanentError(code, text)


def _digits(number: str) -> str:
    d = "".join(ch for ch in number if ch.isdigit())
    return d[2:] if d.startswith("00") else d


def assign_reply(
    items: Sequence[ReplyItem], destinations: Sequence[str]
) -> list[SubmitResult | ProviderError]:
    """One result per destination (distinct within a request) from the reply items."""
    if len(items) == 1 and items[0].destination is None:
        return [_result(items[0]) for _ in destinations]
    wanted = [_digits(d) for d in destinations]
    results: list[SubmitResult | ProviderError | None] = [None] * len(destinations)
    leftovers: list[ReplyItem] = []
    for item in items:
        idx = _find(_digits(item.destination or ""), wanted, results)
        if idx is None:
            leftovers.append(item)
        else:
            results[idx] = _result(item)
    empty = [i for i, r in enumerate(results) if r is None]
    if leftovers and len(leftovers) == len(empty):
        # The server rewrote the numbers beyond recognition; it answers in request order.
        for i, item in zip(empty, leftovers, strict=True):
            results[i] = _result(item)
    return [
        r if r is not None else base.UnknownOutcomeError("NO_REPLY", "no reply item for this destination")
        for r in results
    ]


def _find(got: str, wanted: list[str], taken: list[SubmitResult | ProviderError | None]) -> int | None:
    if not got:
        return None
    for i, w in enumerate(wanted):
        if taken[i] is None and w == got:
            return i
    for i, w in enumerate(wanted):  # national vs international form of the same number
        if taken[i] is None and min(len(w), len(got)) >= 7 and (w.endswith(got) or got.endswith(w)):
            return i
    return None


def _result(item: ReplyItem) -> SubmitResult | ProviderError:
    if item.code != SUCCESS:
        return error_for(item.code)
    ids = (UpstreamId(item.message_id),) if item.message_id else ()
    return SubmitResult(upstream_ids=ids, provider_status_code=SUCCESS)


@dataclass(slots=True)
class _Batch:
    """One request's worth of messages: distinct destinations (replies map back by destination)."""

    indices: list[int]
    destinations: set[str]
    chars: int


def _place(batches: list[_Batch], index: int, destination: str) -> None:
    for b in batches:
        if (len(b.indices) < MAX_DESTINATIONS and b.chars + len(destination) < MAX_DESTINATION_CHARS
                and destination not in b.destinations):
            b.indices.append(index)
            b.destinations.add(destination)
            b.chars += len(destination) + 1
            return
    batches.append(_Batch([index], {destination}, len(destination) + 1))


class BulksmsProvider(BatchHttpProvider):
    """The seed-001 API, many destinations per request (the module docstring has the error table)."""

    dialect = "bulksms"
    capability = BULKSMS

    def __init__(self, config: HttpProviderConfig) -> None:
        if config.username is None or config.password is None:
            raise ValueError(f"provider {config.name}: bulksms needs username and password")
        super().__init__(config, config.password.get_secret_value())

    async def submit_many(self, messages: Sequence[OutboundMessage]) -> list[SubmitResult | ProviderError]:
        """Messages with the same text, sender and type share requests (comma-separated destinations)."""
        results: list[SubmitResult | ProviderError | None] = [None] * len(messages)
        batches: dict[tuple[str, str, int], list[_Batch]] = {}
        for i, msg in enumerate(messages):
            source = msg.sender or self.config.default_from
            if not source:
                results[i] = self.http.fail(base.RouteError("NO_SOURCE", "no sender and no default_from"))
                continue
            try:
                text = msg.body
                if msg.long_message_mode is LongMessageMode.CUT:
                    text = BULKSMS.cut(msg.body, msg.encoding, msg.flash)
            except EncodingError as exc:
                results[i] = self.http.fail(PermanentError("ENCODING", str(exc)))
                continue
            key = (text, source, message_type(msg.encoding, msg.flash))
            _place(batches.setdefault(key, []), i, _digits(msg.to))
        sem = asyncio.Semaphore(self.max_in_flight)

        async def send(key: tuple[str, str, int], batch: _Batch) -> None:
            async with sem:
                outcome = await self._send(key, [messages[i] for i in batch.indices])
            for i, r in zip(batch.indices, outcome, strict=True):
                results[i] = r

        await asyncio.gather(*(send(key, b) for key, group in batches.items() for b in group))
        done = [r for r in results if r is not None]
        assert len(done) == len(messages)
        return done

    async def _send(
        self, key: tuple[str, str, int], chunk: list[OutboundMessage]
    ) -> list[SubmitResult | ProviderError]:
        text, source, mtype = key
        destinations = [m.to.lstrip("+") for m in chunk]
        try:
            body = await self._get(text, source, mtype, destinations)
        except ProviderError as exc:
            return [exc] * len(chunk)  # counted once, by the transport
        try:
            outcome = assign_reply(parse_reply(body), destinations)
        except BadReply as exc:
            outcome = [base.UnknownOutcomeError("BAD_REPLY", f"unreadable reply: {redact(str(exc))}")] * len(chunk)
        self.http.count(outcome)
        log.debug("bulksms %s: %d destination(s), type %d", self.name, len(chunk), mtype)
        return outcome

    async def _get(self, text: str, source: str, mtype: int, destinations: list[str]) -> str:
        query = urlencode(
            [
                ("username", self.config.username or ""),
                ("password", self._secret or ""),
                ("type", str(mtype)),
                ("dlr", "1"),
                ("destination", ",".join(destinations)),
                ("source", source),
                ("message", text),
            ],
            quote_via=quote,
            safe="",
        )
        url = self.config.url + ("&" if "?" in self.config.url else "?") + query
        response = await self.http.request("GET", url)
        if response.status_code == 200:
            return response.text
        raise self.http.fail(status_error(response, self.name))
