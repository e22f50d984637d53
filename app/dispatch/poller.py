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
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import HttpProviderConfig, Settings, SmppProviderConfig
from app.db.tables import Message, MessagePart, utcnow
from app.domain.ids import UpstreamId
from app.domain.status import ReportCounts, Status
from app.metrics import Metrics
from app.providers.base import Provider, Receipt, SenderQuery
from app.services.receipts import apply_to_parts

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
                 providers: dict[str, Provider], on_commit: object = None, metrics: Metrics | None = None) -> None:
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
        async with self._sessions() as s:
            # Claimed like the dispatcher claims messages: replicas never ask about the same part at once.
            parts = (await s.execute(
                select(MessagePart.id, MessagePart.provider, MessagePart.upstream_id, MessagePart.submitted_at,
                       Message.from_addr)
                .join(Message, Message.sid == MessagePart.message_sid)
                .where(MessagePart.next_poll_at.is_not(None), MessagePart.next_poll_at <= now)
                .order_by(MessagePart.next_poll_at).limit(BATCH)
                .with_for_update(skip_locked=True, of=MessagePart))).all()
            pending = [(int(r[0]), str(r[1]), r[2], r[3]) for r in parts]
            senders = {int(r[0]): r[4] for r in parts}
            if pending:
                await s.execute(update(MessagePart).where(MessagePart.id.in_([r[0] for r in pending]))
                                .values(next_poll_at=now + LEASE))
            await s.commit()
        if not pending:
            return 0

        async def ask(pid: int, provider: str, upstream_id: str) -> Receipt | None:
            async with self._sem:
                try:
                    p = self._providers[provider]
                    if isinstance(p, SenderQuery):
                        return await p.query_status_from(UpstreamId(upstream_id), senders.get(pid))
                    return await p.query_status(UpstreamId(upstream_id))
                except Exception as exc:
                    log.warning("status query to %s failed: %s", provider, type(exc).__name__)
                    return None

        answers = await asyncio.gather(*(ask(pid, p, u or "") for pid, p, u, _ in pending))
        receipts: list[tuple[int, Receipt]] = []  # answers go to the part asked about (ids may be reused)
        reschedule: list[tuple[int, object]] = []
        for (pid, provider, upstream_id, submitted), answer in zip(pending, answers, strict=True):
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
        async with self._sessions() as s:
            if reschedule:  # one executemany by primary key, not a statement per part
                await s.execute(update(MessagePart), [{"id": pid, "next_poll_at": when} for pid, when in reschedule])
            counts = ReportCounts()
            await apply_to_parts(s, receipts, self._settings, counts)
            # Polled parts that reached a final status stop being polled (apply_receipts clears it);
            # make sure even a non-advancing answer does not poll forever.
            done = [pid for (pid, *_), a in zip(pending, answers, strict=True) if a is not None]
            if done:
                await s.execute(update(MessagePart).where(MessagePart.id.in_(done)).values(next_poll_at=None))
            await s.commit()
        if self._metrics is not None:
            self._metrics.count_reports(counts)
        if receipts and callable(self._on_commit):
            self._on_commit()
        return len(pending)
