"""GET /msg-client/providers — each upstream's state: connected/bound, in flight, errors, balance."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from fastapi import APIRouter

from app.api.deps import ApiKeyDep, Ctx
from app.api.schemas import error_responses

router = APIRouter(prefix="/msg-client", tags=["operations"])
log = logging.getLogger("smsgw.api")


@router.get("/providers", responses=error_responses(401, 500), summary="Upstream providers and their state")
async def providers(ctx: Ctx, key: ApiKeyDep) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    running = ctx.workers.providers if ctx.workers is not None else {}
    for cfg in ctx.settings.providers:
        entry: dict[str, Any] = {"name": cfg.name, "type": cfg.type, "dialect": getattr(cfg, "dialect", "smpp")}
        provider = running.get(cfg.name)
        if provider is None:
            entry.update(connected=False, running=False)
        else:
            entry.update(dataclasses.asdict(provider.state()), running=True)
            balance = getattr(provider, "balance", None)
            if callable(balance):
                try:
                    entry["balance"] = await balance()
                except Exception as exc:  # the balance is a nicety: never fail the listing for it
                    entry["balance_error"] = type(exc).__name__
        out.append(entry)
    return {"Providers": out}
