"""The providers' ReportSink on the database, with group commit; `commit_reports`, the transaction
a batch of status reports (a group here, or one webhook's) is applied and committed in.

Many receipts arriving at once (an SMSC answers thousands per second) would cost one transaction
each if applied one by one. Callers instead queue their receipts and wait; one flusher applies
everything queued so far in one transaction and wakes them all when it has committed. A caller
returns only after its receipts are committed, so an SMPP provider may then acknowledge deliver_sm.
If a batch fails, each caller's receipts are retried alone, so one bad report cannot hold up others.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain.messages import InboundSms, Receipt
from app.domain.status import ReportCounts
from app.errors import SinkClosed
from app.metrics import Metrics
from app.services import kept_receipts
from app.services.inbound import receive_inbound
from app.services.receipts import apply_receipts

log = logging.getLogger("smsgw.receipts")

MAX_GROUP = 2000


async def commit_reports(sessions: async_sessionmaker[AsyncSession], receipts: Sequence[Receipt],
                         settings: Settings, metrics: Metrics, on_commit: Callable[[], None],
                         committed: Callable[[], None] = lambda: None) -> list[str]:
    """Apply status reports in a transaction of their own and commit; `on_commit` runs when one made a
    message final (its report is in the outbox). Returns those sids. Once this returns the reports are
    stored: the sender may be answered (deliver_sm_resp, a webhook's 200) and will not send them again.
    `committed` runs as soon as the transaction has committed, before its connection goes back to the
    pool (a turn of a loaded event loop of its own): the earliest the senders may be answered."""
    counts = ReportCounts()
    kept: list[int] = []
    async with sessions() as s:
        finals = await apply_receipts(s, receipts, settings, counts, kept)
        await s.commit()
        if finals:
            on_commit()
        committed()
    metrics.count_reports(counts)
    if kept:
        await _commit_kept(sessions, kept, settings, metrics, on_commit)
    return finals


async def _commit_kept(sessions: async_sessionmaker[AsyncSession], kept: list[int], settings: Settings,
                       metrics: Metrics, on_commit: Callable[[], None]) -> None:
    # Kept reports whose part was being recorded while they were matched: it may have committed
    # since (see services/kept_receipts.py). They are stored already, so a failure here only waits for
    # the sweep.
    try:
        counts = await kept_receipts.recheck_kept(sessions, kept, settings)
    except Exception:
        log.exception("applying %d kept receipts failed: left to the sweep", len(kept))
        return
    if counts is not None:
        metrics.count_reports(counts, receipts=False)  # counted when they arrived
        on_commit()


class DbReportSink:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, metrics: Metrics,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self._sessions = sessions
        self._settings = settings
        self._metrics = metrics
        self._on_commit = on_commit
        self._queue: deque[tuple[Sequence[Receipt], asyncio.Future[None]]] = deque()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._flusher(), name="receipt-flusher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(SinkClosed("shutting down"))
        self._queue.clear()

    async def receipts(self, receipts: Sequence[Receipt]) -> None:
        if not receipts:
            return
        if self._task is None:  # not started (tests, CLI): apply directly
            await self._apply(list(receipts))
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((receipts, fut))
        self._kick.set()
        await fut

    async def inbound(self, message: InboundSms) -> None:
        await receive_inbound(self._sessions, message, self._settings)  # deliver_sm_resp follows
        self._on_commit()

    async def _apply(self, receipts: list[Receipt], committed: Callable[[], None] = lambda: None) -> None:
        await commit_reports(self._sessions, receipts, self._settings, self._metrics, self._on_commit, committed)

    async def _flusher(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._queue:
                group: list[tuple[Sequence[Receipt], asyncio.Future[None]]] = []
                size = 0
                while self._queue and size < MAX_GROUP:
                    item = self._queue.popleft()
                    group.append(item)
                    size += len(item[0])
                answered: list[bool] = []  # gains True once _answer ran: the group is committed
                try:
                    await self._apply([r for rs, _ in group for r in rs],  # answered at its commit
                                      functools.partial(_answer, group, answered))
                except Exception as exc:
                    if answered:  # only what came after the commit failed (giving the connection back)
                        log.exception("after applying %d receipts", size)
                        continue
                    if len(group) == 1:
                        log.exception("applying receipts failed")
                        self._metrics.receipts.labels("error").inc(size)
                        if not group[0][1].done():
                            group[0][1].set_exception(exc)
                        continue
                    for rs, fut in group:  # one at a time, to isolate the bad one
                        try:
                            await self._apply(list(rs))
                            if not fut.done():
                                fut.set_result(None)
                        except Exception as one:
                            log.exception("applying receipts failed")
                            if not fut.done():
                                fut.set_exception(one)


def _answer(group: list[tuple[Sequence[Receipt], asyncio.Future[None]]], answered: list[bool]) -> None:
    answered.append(True)
    for _, fut in group:
        if not fut.done():
            fut.set_result(None)
