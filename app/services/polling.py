"""The status poller's two transactions (app/dispatch/poller.py asks the providers in between, with no
transaction open): claim the parts due for a question, then record the answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import poll_queries
from app.db.poll_queries import DuePart
from app.domain.messages import Receipt
from app.domain.status import ReportCounts
from app.services.receipts import apply_to_parts


async def claim_polls(sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int,
                      lease: timedelta) -> list[DuePart]:
    """Claim (and commit the lease on) up to `limit` parts due for a status question."""
    async with sessions() as s:
        due = await poll_queries.claim_due(s, now, limit, lease)
        await s.commit()
    return due


async def record_answers(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                         answers: Sequence[tuple[int, Receipt]], reschedule: Sequence[tuple[int, datetime]],
                         answered: Sequence[int], counts: ReportCounts) -> list[str]:
    """In one transaction: apply `answers` to the parts asked about (like receipts), set when the
    unanswered ones are asked next, and stop polling the `answered` parts. Returns the sids that became
    final; `counts` gains what applying counted."""
    async with sessions() as s:
        await poll_queries.reschedule(s, reschedule)
        finals = await apply_to_parts(s, answers, settings, counts)
        # Parts that reached a final status stop being polled (applying clears next_poll_at); make sure
        # an answer that did not advance the part does not have it polled forever either.
        await poll_queries.stop_polling(s, answered)
        await s.commit()
    return finals
