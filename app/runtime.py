"""What a gateway process holds while it runs: opened by the lifespan (app/main.py), handed to the
API through `app.state.runtime` and to the background workers (app/workers.py)."""

from __future__ import annotations

import gc
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


# The collector's first generation runs after this many more allocations than frees (Python's default
# is 700); the older ones after this many runs of the one below.
GC_THRESHOLDS = (20_000, 20, 20)
_heap_settled = False


def settle_heap() -> None:
    """Once a process has started (modules imported, the app and its workers built): move every object
    alive now out of the collector's reach (gc.freeze; they live as long as the process) and collect
    less often. A gateway under load makes short-lived objects by the million; with the defaults and a
    heap of imported modules, the full collections alone took 7 % of its CPU (bench.sampler's header),
    all the collector 14 %. Once per process: a test run that starts many apps freezes only the first."""
    global _heap_settled
    if _heap_settled:
        return
    _heap_settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
