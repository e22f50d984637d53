"""Request dependencies as `Annotated` aliases: the app context, a database session, the caller's key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.ratelimit import RateLimiter
from app.api.webhook_auth import WebhookAuth
from app.errors import TooManyRequests, Unauthorized
from app.runtime import Runtime
from app.services.api_keys import KeyInfo


@dataclass(kw_only=True)
class AppContext(Runtime):
    """The process's runtime plus what only the API uses; handlers reach it through `Ctx`."""

    limiter: RateLimiter
    webhook_auth: WebhookAuth


async def _ctx(request: Request) -> AppContext:  # async: a sync dependency costs a thread hop
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(_ctx)]


async def _session(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    async with ctx.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(_session)]


async def authenticate(ctx: AppContext, x_api_key: str | None, authorization: str | None) -> KeyInfo:
    """The caller's key from `X-API-Key` or `Authorization: Bearer`; 401 when missing or unknown, 429 when
    it is over its rate limit. Shared by the dependency below and the lean /send route."""
    key = x_api_key or None
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    info = await ctx.keys.lookup(key)
    if info is None:
        raise Unauthorized("unknown or revoked API key")
    wait = ctx.limiter.check(info.id, info.rate_limit_per_second)
    if wait > 0:
        retry = max(1, int(wait + 0.999))
        raise TooManyRequests(f"rate limit exceeded; retry in {retry} s", retry_after=retry)
    return info


async def _api_key(
    ctx: Ctx,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key", description="API key (or use Bearer)")] = None,
) -> KeyInfo:
    return await authenticate(ctx, x_api_key, authorization)


ApiKeyDep = Annotated[KeyInfo, Depends(_api_key)]
