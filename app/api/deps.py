"""Request dependencies as `Annotated` aliases: the app context, a database session, the caller's key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.api.errors import TooManyRequests, Unauthorized
from app.api.ratelimit import RateLimiter
from app.api.webhook_auth import WebhookAuth
from app.config import Settings
from app.services.api_keys import KeyInfo, KeyStore


@dataclass
class AppContext:
    """Everything the lifespan opens; handlers reach it through `Ctx`."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyStore
    limiter: RateLimiter
    webhook_auth: WebhookAuth
    wake_dispatcher: Callable[[], None] = lambda: None
    workers: Any = None  # app.main.Workers once started
    extras: dict[str, Any] = field(default_factory=dict)


async def _ctx(request: Request) -> AppContext:  # async: a sync dependency costs a thread hop
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(_ctx)]


async def _session(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    async with ctx.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(_session)]


async def _api_key(
    ctx: Ctx,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key", description="API key (or use Bearer)")] = None,
) -> KeyInfo:
    key = x_api_key or None
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
    info = await ctx.keys.lookup(key)
    if info is None:
        raise Unauthorized("unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    wait = ctx.limiter.check(info.id, info.rate_limit_per_second)
    if wait > 0:
        retry = max(1, int(wait + 0.999))
        raise TooManyRequests(f"rate limit exceeded; retry in {retry} s", headers={"Retry-After": str(retry)})
    return info


ApiKeyDep = Annotated[KeyInfo, Depends(_api_key)]
