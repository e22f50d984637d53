"""The HTTP callback sender is woken by a commit only when this process wrote HTTP rows (callbacks,
forwards) since it last looked: the receipts' commits, which write delivery reports only, leave it
asleep (app/services/outbox_rows.count_written, app/events/callbacks.CallbackSender.notify)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from app.config import Settings
from app.events.callbacks import CallbackSender
from app.services.outbox_rows import OutboxKind, count_written


def _rows(*kinds: OutboxKind) -> list[dict[str, Any]]:
    return [{"kind": kind.value} for kind in kinds]


async def test_only_http_rows_wake_the_callback_sender() -> None:
    sender = CallbackSender(async_sessionmaker(), Settings(database_url="sqlite+aiosqlite://"), "wake")
    try:
        wake = sender._wake
        sender.notify()
        assert not wake.is_set()  # nothing written since it was made

        count_written(_rows(OutboxKind.REPORT, OutboxKind.INBOUND))
        sender.notify()
        assert not wake.is_set()  # reports and inbound SMS are the broker publisher's

        count_written(_rows(OutboxKind.REPORT, OutboxKind.CALLBACK))
        sender.notify()
        assert wake.is_set()

        wake.clear()
        sender.notify()
        assert not wake.is_set()  # that callback was announced once

        count_written(_rows(OutboxKind.FORWARD))
        sender.notify()
        assert wake.is_set()
    finally:
        await sender.stop()
