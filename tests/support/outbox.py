"""Outbox rows for publisher tests: delivery reports as the receipt path writes them; what is left.

A published row is deleted, so "still to publish" is a row that is there with no `published_at`
(only a given-up callback keeps its row, with `published_at` set)."""

from __future__ import annotations

import asyncio
import secrets
import time

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import OutboxAttempt, OutboxEvent
from app.domain.status import Status
from app.services import outbox_rows as outbox


def report_rows(queue: str, sids: list[str]) -> list[dict[str, object]]:
    return [outbox.report_event(queue=queue, message_sid=sid, status=Status.DELIVERED, provider_status_code="DELIVRD",
                                channel="smpp", to="+96170123456", provider="smsc-main", error_code=None)
            for sid in sids]


async def write_reports(sessions: async_sessionmaker[AsyncSession], queue: str, n: int) -> list[str]:
    sids = ["SM" + secrets.token_hex(16) for _ in range(n)]
    async with sessions() as s:
        await s.execute(insert(OutboxEvent), report_rows(queue, sids))
        await s.commit()
    return sids


async def unpublished(sessions: async_sessionmaker[AsyncSession], queue: str) -> int:
    """Report rows for `queue` still to publish."""
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.destination == f"/queue/{queue}", OutboxEvent.published_at.is_(None))) or 0)


async def wait_published(sessions: async_sessionmaker[AsyncSession], queue: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while left := await unpublished(sessions, queue):
        assert time.monotonic() < deadline, f"{left} reports still unpublished"
        await asyncio.sleep(0.05)


async def attempt_records(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxAttempt]:
    async with sessions() as s:
        return list((await s.scalars(select(OutboxAttempt))).all())
