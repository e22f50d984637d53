"""The one error hierarchy of smsgw. Services and adapters raise these; nothing here knows HTTP.

    SmsgwError
    ├── ClientError               a request that cannot be done as asked; `.code`, `.message`, `.field`
    │   ├── BadRequest            a missing or invalid field (400)
    │   ├── Unauthorized          no or unknown credentials (401)
    │   ├── Forbidden             credentials that do not pass (403)
    │   ├── NotFound              no such thing, or not the caller's (404)
    │   ├── Conflict              the thing is in a state that forbids it (409)
    │   ├── PayloadTooLarge       (413)
    │   ├── TooManyRequests       over the caller's rate limit; `.retry_after` (429)
    │   └── Unavailable           not the caller's fault: a dependency (the database) is down and
    │                             nothing was done; retry after `.retry_after` (503)
    ├── SinkClosed                the report sink is shutting down: nothing was stored
    └── ProviderError             an upstream said no; `.code` is its status code (ProviderStatusCode)
        ├── RetryableError        try again later with backoff (throttled, queue full, 5xx, timeout
        │                         before the request was sent, connection refused)
        ├── PermanentError        the message fails with `.code` as ProviderStatusCode
        │   └── RouteError        this provider cannot take it (no route, down): try the next
        │                         provider of the route, fail only when none is left
        └── UnknownOutcomeError   the request left but no answer came: the upstream may have the
                                  message. Never blindly resubmitted (see the dispatcher)

The HTTP status of each client error is decided in one table, in app/api/errors.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.domain.messages import PartProgress


class SmsgwError(Exception):
    """Every error smsgw raises on purpose."""


class ClientError(SmsgwError):
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None, *, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code
        self.retry_after = retry_after


class BadRequest(ClientError):
    code = "invalid_field"


class Unauthorized(ClientError):
    code = "unauthorized"


class Forbidden(ClientError):
    code = "forbidden"


class NotFound(ClientError):
    code = "not_found"


class Conflict(ClientError):
    code = "conflict"


class PayloadTooLarge(ClientError):
    code = "payload_too_large"


class TooManyRequests(ClientError):
    code = "rate_limited"


class Unavailable(ClientError):
    """Not the caller's fault, but answered like a client error: nothing was done, retry."""

    code = "unavailable"


class SinkClosed(SmsgwError, RuntimeError):
    """The report sink is shutting down: the report was not stored (the upstream will send it again)."""


class ProviderError(SmsgwError):
    """An upstream refused or failed a request. `code` is what it said (ProviderStatusCode).

    `progress`: set when a long message stopped part-way, naming the parts the upstream did accept
    (they are not sent again, and keep their ids for receipts)."""

    progress: PartProgress | None = None

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
