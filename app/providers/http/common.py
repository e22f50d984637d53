"""What every HTTP dialect shares: one transport (pooled keep-alive client, throttle, the one table
from transport errors to ProviderErrors, error counting, state) and a base class, so that a dialect
module holds only its request building and its reply parsing.

These provider APIs carry passwords and keys in query strings, so nothing here ever logs or raises
with a raw URL: `redact()` replaces the value of every secret-looking parameter, and transport
errors are re-raised as ProviderErrors that name only the provider and the error's kind.

    transport error (wire.py)                         ProviderError       code
    ConnectFailed (refused, connect/pool timeout)     RetryableError      CONNECT   (nothing left)
    BadUrl                                            RouteError          BAD_URL   (misconfigured)
    ReplyTimeout                                      UnknownOutcomeError TIMEOUT   (it may have it)
    ReplyBroken (connection dropped, not HTTP)        UnknownOutcomeError TRANSPORT

    HTTP status (after the dialect read what it knows) ProviderError      code
    429, 500, 502, 503                                RetryableError      HTTP<n> (Retry-After kept)
    504                                               UnknownOutcomeError HTTP504
    any other non-2xx (401, 403, 404, …)              RouteError          HTTP<n>
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from app.config import HttpProviderConfig
from app.domain.ids import UpstreamId
from app.domain.status import RECEIPT_STAT, REPORTED
from app.logs import redact
from app.providers import base
from app.providers.http import wire
from app.providers.throttle import Throttle

log = logging.getLogger("smsgw.providers.http")

# The one table from transport exceptions to what the dispatcher does.
EXCEPTION_TABLE: tuple[tuple[type[Exception], type[base.ProviderError], str], ...] = (
    (wire.ConnectFailed, base.RetryableError, "CONNECT"),
    (wire.BadUrl, base.RouteError, "BAD_URL"),
    (wire.ReplyTimeout, base.UnknownOutcomeError, "TIMEOUT"),
    (wire.ReplyBroken, base.UnknownOutcomeError, "TRANSPORT"),
)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503})


def map_exception(exc: Exception, provider: str) -> base.ProviderError | None:
    """The ProviderError a transport exception stands for (EXCEPTION_TABLE), None for any other."""
    for kind, error, code in EXCEPTION_TABLE:
        if isinstance(exc, kind):
            return error(code, f"{provider}: {type(exc).__name__}")
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(response: wire.Reply, provider: str) -> base.ProviderError:
    """The ProviderError for an HTTP status the dialect has no words of its own for."""
    status = response.status_code
    code = f"HTTP{status}"
    if status in RETRYABLE_STATUSES:
        return base.RetryableError(code, f"{provider} answered {status}",
                                   retry_after_seconds(response.headers.get("retry-after")))
    if status == 504:
        return base.UnknownOutcomeError(code, f"{provider}: gateway timeout")
    return base.RouteError(code, f"{provider} answered {status}")


def final_receipt(provider: str, upstream_id: UpstreamId, word: str) -> base.Receipt | None:
    """A polled status word (SMPP receipt vocabulary) as a Receipt once it is final, else None."""
    status = RECEIPT_STAT.get(word)
    if status is None or status not in REPORTED:
        return None  # ENROUTE, SENT, ACCEPTD, ATES, or an error text
    return base.Receipt(provider=provider, upstream_id=upstream_id, status=status, provider_status_code=word,
                        source=f"poll:{provider}")


class HttpTransport:
    """One provider's connection pool and its counters; every request of a dialect goes through it."""

    def __init__(self, config: HttpProviderConfig, secret: str | None) -> None:
        self.name = config.name
        self._config = config
        self._secret = secret
        self._bucket = Throttle(config.throughput)
        self._client: wire.WireClient | None = None
        self.in_flight = 0
        self.submitted = 0
        self.errors = 0
        self.last_error: str | None = None

    @property
    def started(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        if self._client is None:
            self._client = wire.WireClient(self._config.timeout, self._config.concurrency,
                                           max_body=self._config.max_reply_bytes)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def request(self, method: str, url: str, *, throttle: bool = True, **kwargs: Any) -> wire.Reply:
        """Send one request; transport errors come out as ProviderErrors (EXCEPTION_TABLE), counted."""
        if self._client is None:
            raise self.fail(base.RetryableError("NOT_STARTED", f"provider {self.name} is not started"))
        if throttle:
            await self._bucket.acquire()
        self.in_flight += 1
        try:
            reply = await self._client.request(method, url, **kwargs)
            if log.isEnabledFor(logging.DEBUG):
                query = urlencode(kwargs.get("params") or {})
                log.debug("HTTP request: %s %s -> %d", method,
                          redact(url + ("?" + query if query else ""), self._secret), reply.status_code)
            return reply
        except Exception as exc:
            mapped = map_exception(exc, self.name)
            if mapped is None:
                raise
            raise self.fail(mapped) from None
        finally:
            self.in_flight -= 1

    def fail(self, error: base.ProviderError) -> base.ProviderError:
        """Count an error (its text redacted for state()) and hand it back to raise or return."""
        self.errors += 1
        self.last_error = redact(f"{error.code}: {error.message}", self._secret)
        return error

    def count(self, results: Sequence[base.SubmitResult | base.ProviderError]) -> None:
        for r in results:
            if isinstance(r, base.ProviderError):
                self.fail(r)
            else:
                self.submitted += 1

    def state(self, detail: dict[str, Any]) -> base.ProviderState:
        return base.ProviderState(
            name=self.name, type="http", connected=self.started, in_flight=self.in_flight,
            submitted=self.submitted, errors=self.errors, last_error=self.last_error, detail=detail,
        )


class HttpProvider:
    """The Provider scaffolding of every HTTP dialect; a dialect adds `submit` (or `submit_many`)
    and, if its API has one, `query_status`."""

    type = "http"
    dialect: ClassVar[str]

    def __init__(self, config: HttpProviderConfig, secret: str | None) -> None:
        self.config = config
        self.name = config.name
        self.max_in_flight = config.concurrency
        self.http = HttpTransport(config, secret)
        self._secret = secret

    async def start(self, sink: base.ReportSink) -> None:
        await self.http.start()

    async def stop(self) -> None:
        await self.http.stop()

    def is_available(self) -> bool:
        return self.http.started

    async def query_status(self, upstream_id: UpstreamId) -> base.Receipt | None:
        return None  # no status query API

    def detail(self) -> dict[str, Any]:
        return {"dialect": self.dialect, "url": redact(self.config.url, self._secret)}

    def state(self) -> base.ProviderState:
        return self.http.state(self.detail())

    # Compatibility: tests and the admin view read these off the provider.
    @property
    def last_error(self) -> str | None:
        return self.http.last_error

    @property
    def submitted(self) -> int:
        return self.http.submitted


class BatchHttpProvider(HttpProvider):
    """A dialect whose API takes many destinations per request: `submit` is `submit_many` of one."""

    async def submit(self, message: base.OutboundMessage) -> base.SubmitResult:
        (result,) = await self.submit_many([message])
        if isinstance(result, base.ProviderError):
            raise result
        return result

    async def submit_many(
        self, messages: Sequence[base.OutboundMessage]
    ) -> list[base.SubmitResult | base.ProviderError]:
        raise NotImplementedError
