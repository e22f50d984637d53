"""The `commpeak` dialect (seed 000): submit and status query on one URL, by GET or POST.

Submit: `username, password, ani, dnis, message, command=submit, serviceType, longMessageMode`.
- 200 `{"message_id": "…"}` → accepted.
- 400 with a reason text: `NO ROUTES` → RouteError (the route fails over); `Unknown username` and
  401 `Incorrect password` are the provider's configuration, not the message's fault → RouteError too,
  so another provider can carry it (the message fails only when none is left), and the provider's
  state shows the error.
- 5xx, connection refused, connect/pool timeout → RetryableError; a timeout or a broken connection
  after the request was sent → UnknownOutcomeError (the message id never came back, so no status
  query can tell; the dispatcher fails it instead of risking a duplicate).
Status: `command=query&messageId=…` → `{"status": "DELIVRD"|…}`; ENROUTE/SENT/ACCEPTD are not final;
`message ID … not found` is not final either (the id may not be queryable yet). Queries work for 48 h.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from app.config import HttpProviderConfig
from app.domain.ids import UpstreamId
from app.domain.status import RECEIPT_STAT, REPORTED
from app.providers.base import (
    OutboundMessage,
    ProviderError,
    ProviderState,
    Receipt,
    ReportSink,
    RetryableError,
    RouteError,
    SubmitResult,
    UnknownOutcomeError,
)
from app.providers.http.common import TokenBucket, make_client, protect_logs, redact

_BEFORE_SEND = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class CommpeakProvider:
    type = "http"

    def __init__(self, config: HttpProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.max_in_flight = config.concurrency
        self._client: httpx.AsyncClient | None = None
        self._bucket = TokenBucket(config.throughput)
        self._password = config.password.get_secret_value() if config.password else ""
        self.submitted = 0
        self.errors = 0
        self.last_error: str | None = None
        self.in_flight = 0

    async def start(self, sink: ReportSink) -> None:
        protect_logs(self._password)
        self._client = make_client(self.config.timeout, self.config.concurrency)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def is_available(self) -> bool:
        return self._client is not None

    def _note(self, error: ProviderError) -> ProviderError:
        self.errors += 1
        self.last_error = redact(str(error), self._password)
        return error

    async def _call(self, params: dict[str, str]) -> httpx.Response:
        assert self._client is not None, "provider not started"
        full = {"username": self.config.username or "", "password": self._password, **params}
        self.in_flight += 1
        try:
            if self.config.method == "POST":
                return await self._client.post(self.config.url, data=full)
            return await self._client.get(self.config.url, params=full)
        except _BEFORE_SEND as exc:
            raise self._note(RetryableError("CONNECT", type(exc).__name__)) from None
        except httpx.HTTPError as exc:  # the request left: we cannot know what the upstream did
            raise self._note(UnknownOutcomeError("NO_ANSWER", type(exc).__name__)) from None
        finally:
            self.in_flight -= 1

    def _refusal(self, r: httpx.Response) -> ProviderError:
        reason = redact(r.text.strip()[:200], self._password) or f"HTTP {r.status_code}"
        if r.status_code >= 500:
            return self._note(RetryableError(f"HTTP{r.status_code}", reason))
        return self._note(RouteError(reason, f"HTTP {r.status_code}"))

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        await self._bucket.acquire()
        r = await self._call({
            "ani": (message.sender or self.config.default_from or "").lstrip("+"),
            "dnis": message.to.lstrip("+"), "message": message.body, "command": "submit",
            "serviceType": self.config.service_type, "longMessageMode": message.long_message_mode.value,
        })
        if r.status_code != 200:
            raise self._refusal(r)
        try:
            message_id = str(orjson.loads(r.content)["message_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise self._note(UnknownOutcomeError("BAD_REPLY", "200 without a message_id")) from None
        self.submitted += 1
        return SubmitResult((UpstreamId(message_id),))

    async def query_status(self, upstream_id: UpstreamId) -> Receipt | None:
        r = await self._call({"messageId": upstream_id, "command": "query"})
        if r.status_code != 200:
            raise self._refusal(r)
        try:
            doc: Any = orjson.loads(r.content)
            word = str(doc["status"]).strip().upper()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        status = RECEIPT_STAT.get(word)
        if status is None or status not in REPORTED:
            return None  # ENROUTE, SENT, ACCEPTD, or "message ID … not found"
        return Receipt(provider=self.name, upstream_id=upstream_id, status=status, provider_status_code=word,
                       source=f"poll:{self.name}")

    def state(self) -> ProviderState:
        return ProviderState(self.name, "http", self._client is not None, in_flight=self.in_flight,
                             submitted=self.submitted, errors=self.errors, last_error=self.last_error)
