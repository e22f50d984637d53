"""The gateway's shutdown does not wait for ever on one of its steps: one that has not finished within
SHUTDOWN_STEP_SECONDS is cancelled and left behind with a warning, and the shutdown goes on."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import app.main as main_module
from app.config import Settings
from app.main import create_app


async def test_a_shutdown_step_that_never_ends_is_left_behind_with_a_warning(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real_dispose = AsyncEngine.dispose
    disposed = asyncio.Event()

    async def stuck(self: AsyncEngine, close: bool = True) -> None:
        try:
            await asyncio.Event().wait()  # never set: only the cancellation ends it
        finally:
            await real_dispose(self)  # the engine is still closed, once the test has seen the warning
            disposed.set()

    monkeypatch.setattr(main_module, "SHUTDOWN_STEP_SECONDS", 0.2)
    monkeypatch.setattr(AsyncEngine, "dispose", stuck)
    app = create_app(Settings(database_url=sqlite_url), start_workers=False)
    with caplog.at_level(logging.WARNING, logger="smsgw"):
        async with asyncio.timeout(10):  # before the bound, this waited for ever
            async with app.router.lifespan_context(app):
                pass
    assert "shutdown: database engine did not finish within 0.2 s; going on without it" in caplog.text
    await asyncio.wait_for(disposed.wait(), 5)


async def test_a_cancelled_shutdown_cancels_the_step_it_was_waiting_for() -> None:
    step_cancelled = asyncio.Event()

    async def step() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            step_cancelled.set()
            raise

    shutdown = asyncio.create_task(main_module._bounded("a step", step()))
    await asyncio.sleep(0.05)
    shutdown.cancel()
    with pytest.raises(asyncio.CancelledError):
        await shutdown
    await asyncio.wait_for(step_cancelled.wait(), 2)
