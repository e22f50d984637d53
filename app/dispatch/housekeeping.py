"""The dispatcher's housekeeping: the kept-receipt sweep, expired leases, messages that never got a
receipt, and old Idempotency-Keys and kept receipts. Each task is a service call with its own
transaction (app/services/dispatching.py, app/services/kept_receipts.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.metrics import Metrics
from app.services import dispatching, kept_receipts

log = logging.getLogger("smsgw.dispatch")


class Housekeeping:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, metrics: Metrics,
                 on_outbox: Callable[[], None], wake_dispatcher: Callable[[], None],
                 busy: Callable[[], bool]) -> None:
        self._sessions = sessions
        self._settings = settings
        self._metrics = metrics
        self._on_outbox = on_outbox
        self._wake_dispatcher = wake_dispatcher
        self._busy = busy

    async def run(self) -> None:
        ticks = 0
        while True:
            # Every 0.5 s while sending (the kept-receipt sweep is the backstop of a race of receipts and
            # submit responses); every 2 s once nothing was sent for 2 minutes, so an idle gateway stays idle.
            await asyncio.sleep(0.5 if self._busy() else 2.0)
            ticks += 1
            try:
                swept = await kept_receipts.sweep(self._sessions, self._settings)
                if swept is not None:
                    self._metrics.count_reports(swept, receipts=False)  # counted when they arrived
                    self._on_outbox()
                if ticks % 120 == 0:
                    await kept_receipts.purge_expired(self._sessions)
                    await self.purge_idempotency_keys()
                if ticks % 4 == 0:
                    await self.release_expired_leases()
                if ticks % 20 == 0:
                    await self.expire_unreceipted()
            except Exception:
                log.exception("housekeeping failed")

    async def purge_idempotency_keys(self) -> int:
        return await dispatching.purge_idempotency_keys(self._sessions, self._settings)

    async def expire_unreceipted(self, limit: int = 1000) -> int:
        n, counts = await dispatching.expire_unreceipted(self._sessions, self._settings, limit)
        if n:
            self._metrics.count_reports(counts, receipts=False)
            log.warning("%d messages had no receipt after %.0fs: undelivered (NO_RECEIPT)", n,
                        self._settings.receipt_timeout_seconds)
            self._on_outbox()
        return n

    async def release_expired_leases(self) -> int:
        n = await dispatching.release_expired_leases(self._sessions)
        if n:
            log.warning("%d messages had an expired lease and are due again", n)
            self._wake_dispatcher()
        return n
