"""The `websmpp` dialect (seed 002): `{url}/websms?user=&pass=&sid=&mno=&type=&text=`.

`type`: 1 English (GSM text), 2 Unicode (the text as hex UCS-2, upper case, like the seed's example),
3 special characters (Latin-1 text outside GSM), 4 Arabic (Arabic script sent as is). The seed
restricts `&` and `#` in the text, so a text containing them goes as type 2, whose hex form carries
any character. Replies: `Response: <id>` (one line per destination, in order) or `ERROR - HTTPnn`.
Status: `{url}/websmsstatus?respId=` (ATES pending; DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED,
UNKNOWN final; ACCEPTD not final). Balance: `{url}/balanceReport?userid=&password=`.
Batching: messages with the same text, sender and type go in one request, up to 100 numbers per GET
and 10,000 per POST (the seed's limits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import httpx

from app.config import HttpProviderConfig
from app.domain.encoding import Encoding, is_gsm7
from app.domain.ids import UpstreamId
from app.domain.status import RECEIPT_STAT, REPORTED
from app.providers.base import (
    OutboundMessage,
    PermanentError,
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

# Seed 002's error codes: what each means for the message. Retry: the upstream's trouble, may pass.
# Route: the account (auth, credit, routing) is unusable: try the next provider. Permanent: the
# message itself is wrong and would fail anywhere.
ERRORS: dict[str, type[ProviderError]] = {
    "HTTP01": PermanentError,  # invalid URL format: our request is malformed
    "HTTP02": PermanentError,  # invalid query string
    "HTTP03": RetryableError,  # message submission failed
    "HTTP04": RouteError,  # invalid password
    "HTTP05": RouteError,  # invalid system id
    "HTTP06": PermanentError,  # invalid sender id
    "HTTP07": PermanentError,  # invalid type
    "HTTP08": PermanentError,  # invalid message id
    "HTTP09": PermanentError,  # invalid destination address
    "HTTP10": PermanentError,  # invalid number of messages
    "HTTP11": RetryableError,  # requested service is unavailable
    "HTTP12": RetryableError,  # submit failed
    "HTTP13": RetryableError,  # query request failed
    "HTTP14": RetryableError,  # bind failed (their SMPP side)
    "HTTP15": RouteError,  # not authorized for the request
    "HTTP16": PermanentError,  # invalid request
    "HTTP17": PermanentError,  # invalid message length
    "HTTP18": RouteError,  # insufficient credits
    "HTTP19": PermanentError,  # invalid data coding scheme
    "HTTP20": PermanentError,  # invalid ESM
    "HTTP21": PermanentError,  # invalid header
    "HTTP22": PermanentError,  # invalid schedule time
    "HTTP23": RouteError,  # routing error
    "HTTP24": PermanentError,  # exceeded number of destinations
    "HTTP25": PermanentError,  # no record found
    "HTTP26": RouteError,  # account expired
}
_ERROR = re.compile(r"ERROR\s*-\s*(HTTP\d\d)")
_RESPONSE = re.compile(r"Response:\s*(\S+)")
_ARABIC = re.compile(r"[\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF]")
_BEFORE_SEND = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def message_type(text: str, encoding: Encoding) -> tuple[str, str]:
    """(type, text as sent)."""
    if "&" in text or "#" in text or (encoding is Encoding.UCS2 and not _ARABIC.search(text)):
        return "2", text.encode("utf-16-be").hex().upper()
    if encoding is Encoding.UCS2:
        return "4", text
    if is_gsm7(text):
        return "1", text
    return "3", text


def error_for(code: str) -> ProviderError:
    return ERRORS.get(code, PermanentError)(code, "websmpp refused the request")


class WebsmppProvider:
    type = "http"

    def __init__(self, config: HttpProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.max_in_flight = config.concurrency
        self._client: httpx.AsyncClient | None = None
        self._bucket = TokenBucket(config.throughput)
        self._password = config.password.get_secret_value() if config.password else ""
        self._base = config.url.rstrip("/")
        self.submitted = 0
        self.errors = 0
        self.last_error: str | None = None
        self.balance_text: str | None = None

    async def start(self, sink: ReportSink) -> None:
        protect_logs(self._password)
        self._client = make_client(self.config.timeout, self.config.concurrency)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def is_available(self) -> bool:
        return self._client is not None

    async def _get(self, path: str, params: dict[str, str], post: bool = False) -> str:
        assert self._client is not None, "provider not started"
        url = f"{self._base}/{path}"
        try:
            r = await (self._client.post(url, data=params) if post else self._client.get(url, params=params))
        except _BEFORE_SEND as exc:
            raise self._note(RetryableError("CONNECT", type(exc).__name__)) from None
        except httpx.HTTPError as exc:
            raise self._note(UnknownOutcomeError("NO_ANSWER", type(exc).__name__)) from None
        if r.status_code >= 500:
            raise self._note(RetryableError(f"HTTP_STATUS_{r.status_code}", "server error"))
        if r.status_code != 200:
            raise self._note(RouteError(f"HTTP_STATUS_{r.status_code}", "request refused"))
        return r.text

    def _note(self, error: ProviderError) -> ProviderError:
        self.errors += 1
        self.last_error = redact(str(error), self._password)
        return error

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        (result,) = await self.submit_many([message])
        if isinstance(result, ProviderError):
            raise result
        return result

    async def submit_many(self, messages: Sequence[OutboundMessage]) -> list[SubmitResult | ProviderError]:
        results: list[SubmitResult | ProviderError | None] = [None] * len(messages)
        groups: dict[tuple[str, str, str], list[int]] = {}
        for i, m in enumerate(messages):
            kind, text = message_type(m.body, m.encoding)
            groups.setdefault((kind, text, m.sender or self.config.default_from or ""), []).append(i)
        post = self.config.method == "POST"
        cap = 10_000 if post else 100
        for (kind, text, sender), idx in groups.items():
            for start in range(0, len(idx), cap):
                chunk = idx[start:start + cap]
                await self._bucket.acquire()
                params = {"user": self.config.username or "", "pass": self._password, "sid": sender.lstrip("+"),
                          "mno": ",".join(messages[i].to.lstrip("+") for i in chunk), "type": kind, "text": text}
                try:
                    reply = await self._get("websms", params, post)
                except ProviderError as exc:
                    for i in chunk:
                        results[i] = exc
                    continue
                for i, outcome in zip(chunk, self._parse(reply, len(chunk)), strict=True):
                    results[i] = outcome
        return [r if r is not None else PermanentError("INTERNAL") for r in results]

    def _parse(self, reply: str, n: int) -> list[SubmitResult | ProviderError]:
        lines = [ln.strip() for ln in reply.replace(",", "\n").splitlines() if ln.strip()]
        if len(lines) == 1 and n > 1:
            lines = lines * n  # one answer for the whole request
        out: list[SubmitResult | ProviderError] = []
        for k in range(n):
            line = lines[k] if k < len(lines) else ""
            if m := _RESPONSE.search(line):
                self.submitted += 1
                out.append(SubmitResult((UpstreamId(m.group(1)),)))
            elif e := _ERROR.search(line):
                out.append(self._note(error_for(e.group(1))))
            else:
                out.append(self._note(UnknownOutcomeError("NO_REPLY", "no reply line for this destination")))
        return out

    async def query_status(self, upstream_id: UpstreamId) -> Receipt | None:
        text = (await self._get("websmsstatus", {"respId": upstream_id})).strip().upper()
        word = text.split()[-1] if text else ""
        if _ERROR.search(text):
            return None
        status = RECEIPT_STAT.get(word)
        if status is None or status not in REPORTED:
            return None  # ATES (pending), ACCEPTD
        return Receipt(provider=self.name, upstream_id=upstream_id, status=status, provider_status_code=word,
                       source=f"poll:{self.name}")

    async def balance(self) -> str | None:
        params = {"userid": self.config.username or "", "password": self._password}
        self.balance_text = (await self._get("balanceReport", params)).strip()[:200]
        return self.balance_text

    def state(self) -> ProviderState:
        return ProviderState(self.name, "http", self._client is not None, submitted=self.submitted,
                             errors=self.errors, last_error=self.last_error, detail={"balance": self.balance_text})
