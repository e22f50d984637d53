"""GET /health/live, /health/ready (database, broker, binds, outbox lag) and /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import Ctx
from app.api.responses import Json
from app.startup import Startup

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


async def readiness(ctx: Ctx, startup: Startup | None = None) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    ok = True
    if startup is not None and not startup.done:  # still waiting for the database (app/startup.py)
        ok = False
        checks["startup"] = startup.state()
    try:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:  # any driver error means "not ready"
        ok = False
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    if ctx.workers is not None:
        worker_checks = await ctx.workers.health()
        checks.update(worker_checks)
        ok = ok and all(c.get("ok", True) for c in worker_checks.values() if isinstance(c, dict))
    return ok, checks


@router.get("/health/ready", summary="Database, broker, upstream binds and outbox lag")
async def ready(ctx: Ctx, request: Request) -> Json:
    ok, checks = await readiness(ctx, getattr(request.app.state, "startup", None))
    return Json({"status": "ok" if ok else "unavailable", "checks": checks},
                          status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(ctx: Ctx) -> Response:
    if ctx.workers is not None:
        await ctx.workers.refresh_metrics()
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
