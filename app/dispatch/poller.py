"""Status polling for providers with a query API: HTTP commpeak and websmpp, and SMPP providers
with `query_after` (query_sm, seed 004).

A part sent through such a provider gets `next_poll_at` (HTTP: `poll_interval` after the submit;
SMPP: `query_after`, the time a receipt has to arrive before we ask); this loop asks the provider
for the status of due parts, applies final answers like receipts, and backs off between questions
(the interval grows with the part's age). A receipt that arrives first ends the polling. Past
`poll_max_age` (HTTP, 48 h, the limit of seed 000) the part is given up as UNKNOWN, past
`receipt_timeout_seconds` (SMPP) as NO_RECEIPT; both map to `undelivered`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import HttpProviderConfig, Settings, SmppProviderConfig
from app.db.poll_queries import DuePart
from app.db.tables import utcnow
from app.domain.ids import UpstreamId
from app.domain.status import ReportCounts, Status
from app.metrics import Metrics
from app.providers.base import Provider, Receipt, SenderQuery
from app.services.polling import claim_polls, record_answers

log = logging.getLogger("smsgw.poller")

BATCH = 500
CONCURRENCY = 64
IDLE_FIRST, IDLE_MAX = 0.5, 2.0  # seconds between polls of the due parts while none are due
LEASE = timedelta(seconds=60)  # a claimed part is polled again after this if its poller died
POLLED_DIALECTS = frozenset({"commpeak", "websmpp"})


def first_poll_delay(cfg: HttpProviderConfig | SmppProviderConfig) -> float | None:
    """Seconds after the submit when a part of this provider is first asked about; None: never."""
    if isinstance(cfg, HttpProviderConfig):
        return cfg.poll_interval if cfg.dialect in POLLED_DIALECTS else None
    return cfg.query_after


class StatusPoller:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 providers: dict[str, Provider], on_commit: Callable[[], None] | None = None,
                 metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._sessions = sessions
        self._settings = settings
        self._providers = providers
        self._on_commit = on_commit
        self._configs = {p.name: p for p in settings.providers if first_poll_delay(p) is not None}
        self._sem = asyncio.Semaphore(CONCURRENCY)

    async def run(self) -> None:
        idle = IDLE_FIRST
        while True:
            try:
                n = await self.poll_once()
            except Exception:
                log.exception("status polling failed")
                n = 0
            if n >= BATCH:
                continue
            # Nothing was due: wait longer each time, up to IDLE_MAX (polls are due poll_interval, 30 s by
            # default, after a submit, so a second more costs nothing, and an idle gateway stays idle).
            await asyncio.sleep(idle)
            idle = IDLE_FIRST if n else min(idle * 2, IDLE_MAX)

    async def poll_once(self) -> int:
        now = utcnow()
        due = await claim_polls(self._sessions, now, BATCH, LEASE)  # leased: replicas never ask at once
        if not due:
            return 0

        async def ask(part: DuePart) -> Receipt | None:
            async with self._sem:
                try:
                    p = self._providers[part.provider]
                    upstream_id = UpstreamId(part.upstream_id or "")
                    if isinstance(p, SenderQuery):
                        return await p.query_status_from(upstream_id, part.sender)
                    return await p.query_status(upstream_id)
                except Exception as exc:
                    log.warning("status query to %s failed: %s", part.provider, type(exc).__name__)
                    return None

        answers = await asyncio.gather(*(ask(part) for part in due))
        receipts: list[tuple[int, Receipt]] = []  # answers go to the part asked about (ids may be reused)
        reschedule: list[tuple[int, datetime]] = []
        for part, answer in zip(due, answers, strict=True):
            pid, provider, upstream_id, submitted = part.id, part.provider, part.upstream_id, part.submitted_at
            cfg = self._configs.get(provider)
            age = (now - submitted).total_seconds() if submitted else 0.0
            smpp = isinstance(cfg, SmppProviderConfig)
            max_age = self._settings.receipt_timeout_seconds if smpp else getattr(cfg, "poll_max_age", 0.0)
            if answer is not None:
                receipts.append((pid, answer))
            elif cfg is None or age >= max_age:
                receipts.append((pid, Receipt(
                    provider=provider, upstream_id=UpstreamId(upstream_id or ""), status=Status.UNDELIVERED,
                    provider_status_code="NO_RECEIPT" if smpp else "UNKNOWN", source=f"poll:{provider}",
                    error_code="no final status within the provider's query window")))
            else:
                interval = cfg.query_interval if isinstance(cfg, SmppProviderConfig) else cfg.poll_interval
                delay = max(interval, min(age / 4, 3600.0))
                reschedule.append((pid, now + timedelta(seconds=delay)))
        counts = ReportCounts()
        answered = [part.id for part, a in zip(due, answers, strict=True) if a is not None]
        await record_answers(self._sessions, self._settings, receipts, reschedule, answered, counts)
        if self._metrics is not None:
            self._metrics.count_reports(counts)
        if receipts and self._on_commit is not None:
            self._on_commit()
        return len(due)
