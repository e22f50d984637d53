"""The FastAPI application: `create_app()` and the lifespan that owns every long-lived resource
(engine, key store, providers and their binds, dispatcher, outbox publishers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.api import health, messages, providers, send, webhooks
from app.api.deps import AppContext
from app.api.docs import install_docs
from app.api.errors import install_error_handlers
from app.api.middleware import RequestContextMiddleware, StartupGate
from app.api.openapi_examples import install_openapi
from app.api.ratelimit import RateLimiter
from app.api.webhook_auth import WebhookAuth
from app.config import Settings
from app.db.engine import create_engine, session_factory
from app.logs import logging_configured, settings_secrets, setup_logging
from app.metrics import Metrics
from app.runtime import settle_heap
from app.services.accept_batch import AcceptBatcher
from app.services.api_keys import KeyStore
from app.startup import Startup, database_step, wait_for_database

log = logging.getLogger("smsgw")

# How long a step of the shutdown may take before it is left behind with a warning: a shutdown that
# waits for ever on one of them never ends (test_schemathesis hung once in one, which is not known).
SHUTDOWN_STEP_SECONDS = 10.0


async def _bounded(step: str, awaitable: Awaitable[None]) -> None:
    """Await `awaitable` (its exception, or cancellation, comes out as it would); past the bound it is
    cancelled and left running. Not wait_for: that waits for the cancelled step to end, however long."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait([task], timeout=SHUTDOWN_STEP_SECONDS)
    except asyncio.CancelledError:  # the shutdown itself is cancelled: so is its step, as an await would be
        task.cancel()
        raise
    if not task.done():
        task.cancel()
        log.warning("shutdown: %s did not finish within %g s; going on without it", step, SHUTDOWN_STEP_SECONDS)
        return
    task.result()

DESCRIPTION = """
smsgw queues SMS from contact-centre applications, sends them upstream over SMPP 3.4 or a provider's
HTTP API, takes delivery receipts and inbound SMS back, and publishes one JSON delivery report per
message to the ActiveMQ queue `delivery-report` over STOMP.

Errors are always `{"error": {"code": "...", "message": "...", "field": "..."}}`.
"""


class Gateway(FastAPI):
    """FastAPI with one shortcut: POST /msg-client/send goes through the request context and the startup
    gate (the same middleware, built twice) straight to the lean endpoint (app/api/send.py), before
    FastAPI's and Starlette's own layers — error middleware, telemetry check, body limit, exception
    middleware, routing — which cost about 20 µs of a ~250 µs request. Everything else, lifespan included,
    goes the ordinary way."""

    lean_send: RequestContextMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        if self.lean_send is not None and send.is_lean_send(scope, self.router):
            scope["app"] = self
            await self.lean_send(scope, receive, send_)
            return
        await super().__call__(scope, receive, send_)


def create_app(settings: Settings | None = None, *, start_workers: bool | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    run_workers = settings.workers_enabled if start_workers is None else start_workers
    webhook_auth = WebhookAuth.from_settings(settings)  # fails fast on a bad SMSGW_WEBHOOK_AUTH
    if webhook_auth.allow_any:
        log.warning("webhook authentication is OFF (SMSGW_WEBHOOK_AUTH=none): development only")

    startup = Startup()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, settings.database_pool_size)
        sessions = session_factory(engine)
        keys = KeyStore(sessions, engine)
        keys.start()  # LISTEN for revocations from other processes (it reconnects on its own)
        ctx = AppContext(settings=settings, engine=engine, sessions=sessions, keys=keys, metrics=metrics,
                         accept_batcher=AcceptBatcher(sessions),
                         limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
                         webhook_auth=webhook_auth)
        app.state.ctx = ctx
        app.state.startup = startup

        async def bootstrap() -> None:
            await keys.bootstrap(settings.api_key_list(), settings.admin_api_key_list())

        async def start_workers() -> None:
            if run_workers:
                from app.workers import Workers

                ctx.workers = Workers(ctx)
                await ctx.workers.start()

        waiting: asyncio.Task[None] | None = None
        try:
            await database_step(engine, bootstrap)
        except Exception as exc:
            # Not a reason to exit: start, answer 503, and keep trying (app/startup.py).
            startup.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("database unavailable at start (%s); serving 503 and retrying with backoff",
                        startup.last_error)
            waiting = asyncio.create_task(wait_for_database(startup, engine, bootstrap, start_workers),
                                          name="wait-for-database")
        else:
            await start_workers()  # with the database there, a broken configuration still fails the start
            startup.done = True
        settle_heap()
        lag = asyncio.create_task(metrics.watch_loop(), name="loop-lag")
        try:
            yield
        finally:
            for task in (lag, waiting):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await _bounded(task.get_name(), task)
            await ctx.accept_batcher.close()  # bounded itself (10 s)
            if ctx.workers is not None:
                await ctx.workers.stop()  # each part has its own bounds
            await _bounded("key store", keys.stop())
            await _bounded("database engine", engine.dispose())

    app = Gateway(
        title="smsgw", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served offline by install_docs
        openapi_tags=[
            {"name": "send", "description": "Queue SMS"},
            {"name": "messages", "description": "Look up, list and cancel messages"},
            {"name": "webhooks", "description": "Called by upstream gateways"},
            {"name": "operations", "description": "Health and metrics"},
        ],
    )
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    app.include_router(send.router)
    app.router.routes.insert(0, send.lean_route)
    app.include_router(webhooks.router)
    app.include_router(messages.router)
    app.include_router(providers.router)
    app.include_router(health.router)
    def started() -> bool:
        return startup.done

    # Inside the request context (its 503 carries X-Request-ID), in front of every route.
    app.add_middleware(StartupGate, started=started)
    app.add_middleware(RequestContextMiddleware, max_body=settings.max_body_bytes, observe=metrics.observe_http)
    app.lean_send = RequestContextMiddleware(StartupGate(send.serve_lean, started), settings.max_body_bytes,
                                             metrics.observe_http)
    return app


def create_served_app() -> FastAPI:
    """The app `smsgw serve` hands uvicorn. A worker process of `serve --workers N` is a fresh interpreter
    that only imports this factory: it sets up logging as `serve` does (JSON lines, the level, the redaction
    of secrets) before building the app. Without this the workers' root logger had no handler of ours: no
    INFO line came out of them, and a warning went out as plain text through logging's last resort,
    unredacted."""
    settings = Settings()
    if not logging_configured():
        setup_logging(settings.log_format, settings.log_level, settings_secrets(settings))
    return create_app(settings)
