"""Every error the API answers, in the contract's shape `{"error": {"code", "message", "field"}}`.

The handlers installed by `install_error_handlers` translate everything in one place: our
`ClientError`s (app/errors.py), FastAPI's request validation (400, never a bare 422), Starlette's HTTP errors (404, 405,
413), and anything unexpected (500: logged with the request id, no stack trace in the body).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.responses import Json
from app.errors import (
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger("smsgw.api")


# The one table from our client errors to HTTP. A subclass not listed takes its nearest listed base.
STATUS_OF: dict[type[ClientError], int] = {
    ClientError: 400, BadRequest: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
    PayloadTooLarge: 413, TooManyRequests: 429, Unavailable: 503,
}


def status_of(exc: ClientError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def headers_of(exc: ClientError) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized) and exc.code == "unauthorized":
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    return headers or None


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the database cannot be reached or went away."""
    import asyncpg
    from sqlalchemy import exc as sa

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, sa.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa.OperationalError | sa.InterfaceError | sa.TimeoutError | OSError | TimeoutError
                      | asyncpg.PostgresConnectionError | asyncpg.InterfaceError
                      # 57xxx: shutting down, starting up, crashed; 53xxx: out of connection slots, memory, disk
                      | asyncpg.OperatorInterventionError | asyncpg.InsufficientResourcesError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> Json:
    return Json(error_body(code, message, field), status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    429: "rate_limited", 503: "unavailable",
}


def _field_of(loc: tuple[Any, ...]) -> str | None:
    """The request field an error is about: `To`, not `body.To.list[str].3`."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return parts[0] if parts else None


def from_validation(errors: Sequence[Any]) -> BadRequest:
    """The 400 for a pydantic validation failure: the first error, naming the contract's field."""
    first: Mapping[str, Any] = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    field = _field_of(loc)
    kind = str(first.get("type", ""))
    if kind == "missing":
        return BadRequest(f"{field or 'a field'} is required", field, code="missing_field")
    if kind == "json_invalid":  # its loc is the error's offset in the body, not a field
        return BadRequest("the body is not valid JSON", code="invalid_body")
    if kind in ("model_attributes_type", "model_type") or (kind == "dict_type" and field is None):
        return BadRequest("the body must be a JSON object", field, code="invalid_body")
    msg = str(first.get("msg", "invalid value"))
    return BadRequest(f"{field}: {msg}" if field else msg, field)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClientError)
    async def _client_error(request: Request, exc: ClientError) -> Json:
        return error_response(status_of(exc), exc.code, exc.message, exc.field, headers_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Json:
        return await _client_error(request, from_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Json:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Json:
        # Reached only for what RequestContextMiddleware did not see (it answers the rest itself, because
        # Starlette re-raises after this handler and uvicorn then closes the client's connection).
        return unexpected_error_response(exc, getattr(request.state, "request_id", "-"), request.url.path)


def unexpected_error_response(exc: BaseException, request_id: str, path: str) -> Json:
    """The answer to an exception no handler claimed: 503 when the database is away (nothing was
    committed, the client may retry), else 500; logged with the request id, no stack trace in the body."""
    if database_unavailable(exc):
        log.warning("database unavailable: %s", type(exc).__name__, extra={"request_id": request_id, "path": path})
        return error_response(503, "unavailable", "the database is unavailable; retry shortly",
                              headers={"Retry-After": "1"})
    log.error("unhandled error", exc_info=exc, extra={"request_id": request_id, "path": path})
    return error_response(500, "internal_error", f"internal error (request id {request_id})")
