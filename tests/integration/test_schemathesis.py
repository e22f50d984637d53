"""Property-based tests of every operation in the app's own `/openapi.json` (schemathesis 4), on real
PostgreSQL with the lifespan entered: no 5xx, responses match their declared schemas, and every 4xx
is the contract's error shape `{"error": {"code", "message", "field"}}` (§2).

Schemathesis runs the ASGI app in its own event-loop thread (the app gets its own engine there), so
this test is synchronous. The seed is fixed and generation derandomized: CI sees the same cases.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from conftest import API_KEY, WEBHOOK_TOKEN, api_settings
from fastapi import FastAPI
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.python import asgi as schemathesis_asgi

from app.main import create_app

if TYPE_CHECKING:
    # Case is generic in its operation; these functions read only the operation's method and path.
    AnyCase = schemathesis.Case[schemathesis.APIOperation[Any, Any, Any, Any]]

SEED = 20260607
MAX_EXAMPLES = 50  # per operation and phase; the whole module runs in well under a minute


def error_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: AnyCase) -> None:
    """Every 4xx answers `{"error": {"code": str, "message": str, "field": str | null}}` and nothing else."""
    if not 400 <= response.status_code < 500:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"{response.status_code} answered as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["field"] is None or isinstance(error["field"], str), error
    if response.status_code == 401:
        assert error["code"] in ("unauthorized", "webhook_auth_required"), error


# The document `/openapi.json` serves (checked below), built without a lifespan: no I/O at import.
OPENAPI: dict[str, Any] = create_app(api_settings("sqlite+aiosqlite://"), start_workers=False).openapi()

schema = schemathesis.openapi.from_dict(copy.deepcopy(OPENAPI), config=schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    # Applied to every generated request, over the generated value of a declared header: the API key
    # for /msg-client/*, the webhook token for /receive and /delivery-notification (api_settings()).
    "headers": {"X-API-Key": API_KEY, "X-Webhook-Token": WEBHOOK_TOKEN},
}))


@schema.hook
def map_case(context: schemathesis.HookContext, case: AnyCase) -> AnyCase:
    """Valid /send requests get real phone numbers, and an Idempotency-Key of their own (drawn keys repeat,
    and a key reused with another body is a 400): otherwise almost every request stops at `To` or at the key
    before Body, From, SendAt or StatusCallback are looked at. Invalid requests (negative mode, coverage
    scenarios) are left alone, so bad `To` values and keys are still sent."""
    op = case.operation
    if (op.method.upper(), op.path) != ("POST", "/msg-client/send") or not isinstance(case.body, dict) \
            or case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return case
    to = case.body.get("To")
    if isinstance(to, str):
        case.body["To"] = "+14155550199"
    elif isinstance(to, list):
        case.body["To"] = [f"+1415555{i:04d}" for i in range(len(to))]
    if case.headers and "Idempotency-Key" in case.headers:
        digest = hashlib.sha256(repr((case.headers["Idempotency-Key"], case.body)).encode()).hexdigest()
        case.headers["Idempotency-Key"] = digest
    return case


@pytest.fixture(scope="module")
def live_app(module_db_url: str) -> Iterator[FastAPI]:
    """The app on a PostgreSQL database of this module's own; schemathesis enters its lifespan on first use.
    Not the session's database: these tests are synchronous, so while they run the session's event loop
    is stopped, and a connection an earlier test left inside a transaction there would hold its row locks
    for the whole module (a receipt here waiting on one of them would wait for ever)."""
    yield create_app(api_settings(module_db_url), start_workers=False)
    # The engine and key store schemathesis started are closed before the test database is dropped.
    schemathesis_asgi.shutdown_lifespans()


async def test_the_schema_under_test_is_what_openapi_json_serves(api: httpx.AsyncClient) -> None:
    r = await api.get("/openapi.json")
    assert r.status_code == 200 and r.json() == OPENAPI


def _call_and_validate(case: AnyCase, live_app: FastAPI) -> None:
    case.call_and_validate(app=live_app, checks=[not_a_server_error, response_schema_conformance, error_shape])


# One test function per operation, so each has its own node id (`test_post_msg_client_send`): pytest 9
# gives every item of one `schema.parametrize()` function the same id, which breaks -k, --lf and reports.
for _path, _methods in OPENAPI["paths"].items():
    for _method in _methods:
        _name = f"test_{_method}_{re.sub(r'[^a-z0-9]+', '_', _path.lower()).strip('_')}"
        globals()[_name] = schema.include(path=_path, method=_method.upper()).parametrize()(_call_and_validate)
