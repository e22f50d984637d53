"""Twilio's Messages API: `POST {url}/2010-04-01/Accounts/{AccountSid}/Messages.json`.

HTTP basic auth (AccountSid:AuthToken), form fields `To`, `From`, `Body`, `StatusCallback`
(`{public_url}/msg-client/delivery-notification`, where Twilio posts signed status callbacks), and
`ValidityPeriod` when the message has one. 201 answers the Message resource; its `sid` is the
upstream id. Twilio chooses the encoding and concatenates long texts itself; it has no flash SMS.

Errors are JSON `{"code", "message", "more_info", "status"}`; what the dispatcher does with them:

    HTTP 429 / code 20429, 21611 (queue full)    RetryableError (Retry-After honoured)
    HTTP 5xx other than 504                      RetryableError
    HTTP 504, read timeout, broken connection    UnknownOutcomeError: Twilio may have created the
                                                 message; never blindly resubmitted
    20003 (401 authenticate), 20005 (account     RouteError: this account cannot send; the route
    not active), 20404 (wrong account/URL),      fails over to its next provider
    21408 (region not enabled on the account),
    21606/21659/21660 (From not usable by this
    account), other 401/403/404
    21211 (invalid To), 21610 (unsubscribed),    PermanentError with the Twilio code as
    21614 (not a mobile), 21612 (unreachable),   ProviderStatusCode
    21617 (too long), 21212 (invalid From), other
    4xx
    connection refused / connect timeout         RetryableError

21408 is a RouteError, not a plain PermanentError: it is the account's geographic permission,
exactly the case where another provider of the route can still deliver.
"""

from __future__ import annotations

from typing import Any

from app.config import HttpProviderConfig
from app.domain.capability import TWILIO
from app.domain.encoding import EncodingError, LongMessageMode
from app.domain.ids import UpstreamId
from app.domain.status import REPORTED, WEBHOOK_STATUS
from app.providers import base
from app.providers.base import OutboundMessage, PermanentError, ProviderError, RouteError, SubmitResult
from app.providers.http.common import HttpProvider, retry_after_seconds
from app.providers.http.wire import Reply

API_VERSION = "2010-04-01"
CALLBACK_PATH = "/msg-client/delivery-notification"
MAX_VALIDITY = 36_000  # seconds, Twilio's upper bound for ValidityPeriod

RETRYABLE_CODES = frozenset({20429, 21611})
ROUTE_CODES = frozenset({20003, 20005, 20404, 21408, 21606, 21659, 21660})
__all__ = ["TwilioProvider", "error_for", "retry_after_seconds"]


def error_for(status: int, body: Any, retry_after: float | None = None) -> ProviderError:
    """Map a Twilio error answer (HTTP status + JSON body) to the ProviderError the dispatcher acts on."""
    code: int | None = None
    text = f"HTTP {status}"
    if isinstance(body, dict):
        raw = body.get("code")
        if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
            code = int(raw)
        if isinstance(body.get("message"), str):
            text = body["message"]
    label = str(code) if code is not None else f"HTTP{status}"
    if status == 504:
        return base.UnknownOutcomeError(label, text)
    if code in RETRYABLE_CODES or status == 429 or status >= 500:
        return base.RetryableError(label, text, retry_after)
    if code in ROUTE_CODES or status == 401 or (code is None and status in (403, 404)):
        return RouteError(label, text)
    return PermanentError(label, text)


def _json(response: Reply) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class TwilioProvider(HttpProvider):
    """A Provider for Twilio's Messages API (see the module docstring for the error table).

    Status comes back on /msg-client/delivery-notification (the webhook), not through the sink."""

    dialect = "twilio"
    capability = TWILIO

    def __init__(self, config: HttpProviderConfig, public_url: str) -> None:
        if not config.account_sid or config.auth_token is None:
            raise ValueError(f"provider {config.name}: twilio needs account_sid and auth_token")
        super().__init__(config, config.auth_token.get_secret_value())
        self._account_sid = config.account_sid
        self._base = f"{config.url.rstrip('/')}/{API_VERSION}/Accounts/{self._account_sid}"
        self.status_callback = public_url.rstrip("/") + CALLBACK_PATH

    def detail(self) -> dict[str, Any]:
        return {**super().detail(), "account_sid": self._account_sid}

    async def submit(self, message: OutboundMessage) -> SubmitResult:
        sender = message.sender or self.config.default_from
        if not sender:
            raise self.http.fail(RouteError("NO_SOURCE", "no sender and no default_from for this provider"))
        body = message.body
        if message.long_message_mode is LongMessageMode.CUT:
            try:
                body = TWILIO.cut(body, message.encoding)
            except EncodingError as exc:
                raise self.http.fail(PermanentError("ENCODING", str(exc))) from None
        form = {"To": message.to, "From": sender, "Body": body, "StatusCallback": self.status_callback}
        if message.validity_period:
            form["ValidityPeriod"] = str(max(1, min(message.validity_period, MAX_VALIDITY)))
        response = await self._request("POST", f"{self._base}/Messages.json", data=form)
        payload = _json(response)
        if response.status_code in (200, 201):
            sid = payload.get("sid") if isinstance(payload, dict) else None
            if not isinstance(sid, str) or not sid:
                raise self.http.fail(base.UnknownOutcomeError("BAD_REPLY", "Twilio accepted but sent no sid"))
            self.http.submitted += 1
            status = payload.get("status")
            return SubmitResult((UpstreamId(sid),), provider_status_code=status if isinstance(status, str) else None)
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        raise self.http.fail(error_for(response.status_code, payload, retry_after))

    async def query_status(self, upstream_id: UpstreamId) -> base.Receipt | None:
        """GET the Message resource; a Receipt once it is delivered, undelivered or failed."""
        response = await self._request("GET", f"{self._base}/Messages/{upstream_id}.json")
        if response.status_code == 404:
            return None
        payload = _json(response)
        if response.status_code != 200 or not isinstance(payload, dict):
            raise error_for(response.status_code, payload, retry_after_seconds(response.headers.get("retry-after")))
        word = str(payload.get("status") or "")
        status = WEBHOOK_STATUS.get(word)
        if status is None or status not in REPORTED:
            return None
        error_code = payload.get("error_code")
        error = str(error_code) if error_code not in (None, "", 0) else None
        return base.Receipt(
            provider=self.name, upstream_id=UpstreamId(str(payload.get("sid") or upstream_id)), status=status,
            provider_status_code=error or word, source=f"poll:{self.name}", error_code=error,
            extra={"error_message": payload.get("error_message")} if payload.get("error_message") else {},
        )

    async def _request(self, method: str, url: str, data: dict[str, str] | None = None) -> Reply:
        return await self.http.request(method, url, data=data, auth=(self._account_sid, self._secret or ""),
                                       headers={"accept": "application/json"})
