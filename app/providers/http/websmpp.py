"""The `websmpp` dialect (seed 002): `{url}/websms?user=&pass=&sid=&mno=&type=&text=`.

`type`, as the seed's table and examples say:
    1 English            GSM 03.38 text of characters that are the same in ASCII (letters, digits,
                         space, `! " % ' ( ) * + , - . / : ; < = > ?`, line breaks)
    3 Special Character  GSM 03.38 text with characters of its own: `$ @ _ £ ¥ è é … Ä Ö Ñ Ü §`
                         and the extension table `[ ] { } | \\ ~ ^ €` (counted twice) — the seed's
                         example is `testing $@ Character`
    2 Unicode            the text as hex UCS-2, upper case (the seed's example); also any text with
                         `&` or `#`, which the seed restricts in message content
    4 Arabic             Arabic script, sent as is
A Latin-1 character outside GSM 03.38 has no 160-character type: such a text goes as type 2, and
`/send` answers UCS2 for it (app/domain/capability.py, WEBSMPP).

Replies: `Response: <id>` or a bare `<id>` (one line per destination, in order) or `ERROR - HTTPnn`.
`ERROR - HTTP24` (too many destinations) splits the request in halves and sends each again.
Status: `{url}/websmsstatus?respId=` (ATES pending; DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED,
UNKNOWN final; ACCEPTD not final). Balance: `{url}/balanceReport?userid=&password=`.
Batching: messages with the same text, sender and type go in one request, up to 100 numbers per GET
and 10,000 per POST (the seed's limits). `LongMessageMode: cut` sends one message's worth of text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from app.config import HttpProviderConfig
from app.domain.capability import WEBSMPP
from app.domain.encoding import Encoding, EncodingError, LongMessageMode, is_gsm7
from app.domain.ids import UpstreamId
from app.providers import base
from app.providers.base import OutboundMessage, PermanentError, ProviderError, RouteError, SubmitResult
from app.providers.http.common import BatchHttpProvider, final_receipt, status_error

R, P, X = base.RetryableError, PermanentError, RouteError
# Seed 002's error codes: what each means for the message. R: the upstream's trouble, may pass.
# X (route): the account (auth, credit, routing) is unusable: try the next provider. P: the
# message itself is wrong and would fail anywhere.
ERRORS: dict[str, type[ProviderError]] = {
    "HTTP01": P,  # invalid URL format: our request is malformed
    "HTTP02": P,  # invalid query string
    "HTTP03": R,  # message submission failed
    "HTTP04": X,  # invalid password
    "HTTP05": X,  # invalid system id
    "HTTP06": P,  # invalid sender id
    "HTTP07": P,  # invalid type
    "HTTP08": P,  # invalid message id
    "HTTP09": P,  # invalid destination address
    "HTTP10": P,  # invalid number of messages
    "HTTP11": R,  # requested service is unavailable
    "HTTP12": R,  # submit failed
    "HTTP13": R,  # query request failed
    "HTTP14": R,  # bind failed (their SMPP side)
    "HTTP15": X,  # not authorized for the request
    "HTTP16": P,  # invalid request
    "HTTP17": P,  # invalid message length
    "HTTP18": X,  # insufficient credits
    "HTTP19": P,  # invalid data coding scheme
    "HTTP20": P,  # invalid ESM
    "HTTP21": P,  # invalid header
    "HTTP22": P,  # invalid schedule time
    "HTTP23": X,  # routing error
    "HTTP24": P,  # exceeded number of destinations (split and resent first; one destination: final)
    "HTTP25": P,  # no record found
    "HTTP26": X,  # account expired
}
TOO_MANY = "HTTP24"
_ERROR = re.compile(r"ERROR\s*-\s*(HTTP\d\d)")
_ACCEPTED = re.compile(r"(?:Response:\s*)?([0-9A-Za-z][0-9A-Za-z_-]*)")
_ARABIC = re.compile(r"[\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF]")
# GSM 03.38 characters at the same code as in ASCII: what type 1 ("English") carries.
_ENGLISH = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"%'()*+,-./:;<=>?\n\r")


def message_type(text: str, encoding: Encoding) -> tuple[str, str]:
    """(type, text as sent)."""
    restricted = any(ch in WEBSMPP.restricted for ch in text)
    if encoding is not Encoding.UCS2 and is_gsm7(text) and not restricted:
        return ("1" if all(ch in _ENGLISH for ch in text) else "3"), text
    if _ARABIC.search(text) and not restricted:
        return "4", text
    return "2", text.encode("utf-16-be").hex().upper()


def error_for(code: str) -> ProviderError:
    return ERRORS.get(code, PermanentError)(code, "websmpp refused the request")


def _outgoing(m: OutboundMessage) -> tuple[str, str]:
    """(type, text as sent) after `cut`: one message's worth of the text in its type's encoding."""
    kind, text = message_type(m.body, m.encoding)
    if m.long_message_mode is not LongMessageMode.CUT:
        return kind, text
    wire = Encoding.GSM7 if kind in ("1", "3") else Encoding.UCS2
    return message_type(WEBSMPP.cut(m.body, wire), wire)


class WebsmppProvider(BatchHttpProvider):
    dialect = "websmpp"
    capability = WEBSMPP

    def __init__(self, config: HttpProviderConfig) -> None:
        super().__init__(config, config.password.get_secret_value() if config.password else "")
        self._base = config.url.rstrip("/")
        self.balance_text: str | None = None

    async def _get(self, path: str, params: dict[str, str], post: bool = False, throttle: bool = False) -> str:
        url = f"{self._base}/{path}"
        if post:
            r = await self.http.request("POST", url, data=params, throttle=throttle)
        else:
            r = await self.http.request("GET", url, params=params, throttle=throttle)
        if r.status_code != 200:
            raise self.http.fail(status_error(r, self.name))
        return r.text

    async def submit_many(self, messages: Sequence[OutboundMessage]) -> list[SubmitResult | ProviderError]:
        results: list[SubmitResult | ProviderError | None] = [None] * len(messages)
        groups: dict[tuple[str, str, str], list[int]] = {}
        for i, m in enumerate(messages):
            try:
                kind, text = _outgoing(m)
            except EncodingError as exc:
                results[i] = self.http.fail(PermanentError("ENCODING", str(exc)))
                continue
            groups.setdefault((kind, text, m.sender or self.config.default_from or ""), []).append(i)
        cap = 10_000 if self.config.method == "POST" else 100
        sem = asyncio.Semaphore(self.max_in_flight)

        async def send(key: tuple[str, str, str], chunk: list[int]) -> None:
            numbers = [messages[i].to.lstrip("+") for i in chunk]
            for i, outcome in zip(chunk, await self._send(sem, key, numbers), strict=True):
                results[i] = outcome

        await asyncio.gather(*(send(key, idx[s:s + cap]) for key, idx in groups.items()
                               for s in range(0, len(idx), cap)))
        return [r if r is not None else PermanentError("INTERNAL") for r in results]

    async def _send(self, sem: asyncio.Semaphore, key: tuple[str, str, str],
                    numbers: list[str]) -> list[SubmitResult | ProviderError]:
        kind, text, sender = key
        params = {"user": self.config.username or "", "pass": self._secret or "", "sid": sender.lstrip("+"),
                  "mno": ",".join(numbers), "type": kind, "text": text}
        async with sem:
            try:
                reply = await self._get("websms", params, post=self.config.method == "POST", throttle=True)
            except ProviderError as exc:
                return [exc] * len(numbers)
        outcome = self._parse(reply, len(numbers))
        if len(numbers) > 1 and any(isinstance(o, ProviderError) and o.code == TOO_MANY for o in outcome):
            # The account allows fewer destinations per request than the seed's limit: halve and resend.
            half = len(numbers) // 2
            first, second = await asyncio.gather(self._send(sem, key, numbers[:half]),
                                                 self._send(sem, key, numbers[half:]))
            return first + second
        self.http.count(outcome)
        return outcome

    def _parse(self, reply: str, n: int) -> list[SubmitResult | ProviderError]:
        lines = [ln.strip() for ln in reply.replace(",", "\n").splitlines() if ln.strip()]
        if len(lines) == 1 and n > 1:
            lines = lines * n  # one answer for the whole request
        out: list[SubmitResult | ProviderError] = []
        for k in range(n):
            line = lines[k] if k < len(lines) else ""
            if e := _ERROR.search(line):
                out.append(error_for(e.group(1)))
            elif (m := _ACCEPTED.fullmatch(line)) and not line.upper().startswith("ERROR"):
                out.append(SubmitResult((UpstreamId(m.group(1)),)))
            else:
                out.append(base.UnknownOutcomeError("NO_REPLY", "no reply line for this destination"))
        return out

    async def query_status(self, upstream_id: UpstreamId) -> base.Receipt | None:
        text = (await self._get("websmsstatus", {"respId": upstream_id})).strip().upper()
        if not text or _ERROR.search(text):
            return None
        return final_receipt(self.name, upstream_id, text.split()[-1])

    async def balance(self) -> str | None:
        params = {"userid": self.config.username or "", "password": self._secret or ""}
        self.balance_text = (await self._get("balanceReport", params)).strip()[:200]
        return self.balance_text

    def detail(self) -> dict[str, Any]:
        return {**super().detail(), "balance": self.balance_text}
