"""What a gateway process holds while it runs: opened by the lifespan (app/main.py), handed to the
API through `app.state.runtime` and to the background workers (app/workers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.metrics import Metrics
from app.services.accept_batch import AcceptBatcher
from app.services.api_keys import KeyStore

if TYPE_CHECKING:  # app.workers imports this module
    from app.workers import Workers


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyStore
    metrics: Metrics
    accept_batcher: AcceptBatcher
    workers: Workers | None = None  # None on an API-only process (SMSGW_WORKERS_ENABLED=false)

    def wake_dispatcher(self) -> None:
        if self.workers is not None:
            self.workers.wake_dispatcher()
