"""The `commpeak` dialect (seed 000): submit and status query on one URL, by GET or POST.

Submit: `username, password, ani, dnis, message, command=submit, serviceType, longMessageMode`.
The API has no dataCoding or flash parameter: the platform sends GSM text as dataCoding 0 and
anything else as 8, and bills 152 characters a part past 160 (134 past 140 for 1–7, 67 past 70 for 8);
`/send` answers and refuses accordingly (app/domain/capability.py, COMMPEAK).
- 200 `{"message_id": "…"}` → accepted.
- 400 with a reason text (`NO ROUTES`, `Unknown username`) and 401 `Incorrect password`: the
  account or its routing, not the message → RouteError `HTTP400`/`HTTP401` with the text as its
  message, so the route fails over (failed only when no provider is left).
- other statuses and transport errors: the shared table (app/providers/http/common.py).
Status: `command=query&messageId=…` → `{"status": "DELIVRD"|…}`; ENROUTE/SENT/ACCEPTD are not final;
`message ID … not found` is not final either (the id may not be queryable yet). Queries work for 48 h.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.config import HttpProviderConfig
from app.domain.capability import COMMPEAK
from app.domain.ids import UpstreamId
from app.logs import redact
from app.providers.base import OutboundMessage, ProviderError, Receipt, RouteError, SubmitResult, UnknownOutcomeError
from app.providers.http.common import HttpProvider, final_receipt, status_error
from app.providers.http.wire import Reply


class CommpeakProvider(HttpProvider):
    dialect = "commpeak"
    capability = COMMPEAK

    def __init__(self, config: HttpProviderConfig) -> None:
        super().__init__(config, config.password.get_secret_value() if config.password else "")

    async def _call(self, params: dict[str, str], throttle: bool) -> Reply:
        full = {"username": self.config.username or "", "password": self._secret or "", **params}
        if self.config.method == "POST":
            return await self.http.request("POST", self.config.url, data=full, throttle=throttle)
        return await self.http.request("GET", self.config.url, params=full, throttle=throttle)

    def _refusal(self, r: Reply) -> ProviderError:
        if r.status_code in (400, 401):
            reason = redact(r.text.strip()[:200], self._secret) or r.reason_phrase
            return self.http.fail(RouteError(f"HTTP{r.status_code}", reason))
        return self.http.fail(status_error(r, self.name))

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        r = await self._call({
            "ani": (message.sender or self.config.default_from or "").lstrip("+"),
            "dnis": message.to.lstrip("+"), "message": message.body, "command": "submit",
            "serviceType": self.config.service_type, "longMessageMode": message.long_message_mode.value,
        }, throttle=True)
        if r.status_code != 200:
            raise self._refusal(r)
        try:
            message_id = str(orjson.loads(r.content)["message_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise self.http.fail(UnknownOutcomeError("BAD_REPLY", "200 without a message_id")) from None
        self.http.submitted += 1
        return SubmitResult((UpstreamId(message_id),))

    async def query_status(self, upstream_id: UpstreamId) -> Receipt | None:
        r = await self._call({"messageId": upstream_id, "command": "query"}, throttle=False)
        if r.status_code != 200:
            raise self._refusal(r)
        try:
            doc: Any = orjson.loads(r.content)
            word = str(doc["status"]).strip().upper()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return final_receipt(self.name, upstream_id, word)
