"""The statements about kept receipts: reports for an upstream id nobody had when they came.

Queries and writes only (no commit); the rules for applying them are in app/services/kept_receipts.py.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, insert, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.bulk import one_of, rows_holding
from app.db.engine import driver_connection, postgres_engine
from app.db.tables import KeptReceipt, Message, MessagePart
from app.domain.ids import UpstreamId, normalise_upstream_id
from app.domain.messages import Receipt
from app.domain.status import FINAL, Status

_NOT_FINAL = [s.value for s in FINAL]


async def insert_kept(session: AsyncSession, reports: Sequence[Receipt], now: datetime,
                      ttl: timedelta) -> list[int]:
    """Keep these reports until `now + ttl`; their row ids, for the check after this transaction commits."""
    result = await session.scalars(insert(KeptReceipt).returning(KeptReceipt.id), [
        {"provider": r.provider, "upstream_id": normalise_upstream_id(r.upstream_id), "status": r.status.value,
         "provider_status_code": r.provider_status_code, "error_code": r.error_code, "source": r.source,
         "payload": _payload(r), "created_at": now, "expires_at": now + ttl}
        for r in reports])
    return list(result.all())


def _payload(r: Receipt) -> dict[str, Any]:
    # Everything the report carried (vendor TLVs, the receipt text's fields), so that applying it
    # later gives the part what applying it at once would have.
    payload: dict[str, Any] = {"raw_id": r.upstream_id, "extra": r.extra}
    if r.done_at is not None:
        payload["done_at"] = r.done_at.isoformat()
    if r.submitted_after is not None:
        payload["submitted_after"] = r.submitted_after.isoformat()
    return payload


def report_of(row: KeptReceipt) -> Receipt:
    """The report a kept row holds, as it came."""
    payload = dict(row.payload or {})
    raw_id = UpstreamId(str(payload.pop("raw_id", row.upstream_id)))
    extra = payload.pop("extra", None)
    if extra is None:  # rows kept before the payload had an "extra" key: the rest of it is the extra
        extra = {k: v for k, v in payload.items() if k not in ("done_at", "submitted_after")}
    done_at, after = payload.get("done_at"), payload.get("submitted_after")
    return Receipt(provider=row.provider, upstream_id=raw_id, status=Status(row.status),
                   provider_status_code=row.provider_status_code, source=row.source, error_code=row.error_code,
                   done_at=_parse(done_at), extra=extra, submitted_after=_parse(after))


def _parse(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


async def lock_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[KeptReceipt]:
    """These kept rows, locked (waiting, not skipping: see kept_receipts for why)."""
    return list((await session.scalars(
        select(KeptReceipt).where(one_of(session, KeptReceipt.id, ids)).order_by(KeptReceipt.id)
        .with_for_update())).all())


async def any_kept_for(sessions: async_sessionmaker[AsyncSession], upstream_ids: Collection[str]) -> bool:
    """Whether a report is kept for any of these ids, asked outside a transaction: on PostgreSQL one
    round trip on a pooled connection (engine.driver_connection), where a session's costs three (BEGIN,
    the SELECT, ROLLBACK). Committed rows only, as a locked SELECT would see: a report being kept at
    this moment is the receipt side's to apply once it has committed (services/kept_receipts.py)."""
    engine = postgres_engine(sessions)
    if engine is not None:
        async with driver_connection(engine) as conn:
            return bool(await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM kept_receipt WHERE upstream_id = ANY($1::text[]))", list(upstream_ids)))
    async with sessions() as s:
        return (await s.scalar(select(KeptReceipt.id).where(one_of(s, KeptReceipt.upstream_id, upstream_ids))
                               .limit(1))) is not None


async def lock_for_upstream_ids(session: AsyncSession, provider: str, upstream_ids: set[str],
                                since: datetime) -> list[KeptReceipt]:
    """Kept rows for these ids (from this provider, or from a reporter that did not say), kept since
    `since`, locked (waiting)."""
    return list((await session.scalars(
        select(KeptReceipt)
        .where(one_of(session, KeptReceipt.upstream_id, upstream_ids))
        .where(or_(KeptReceipt.provider.is_(None), KeptReceipt.provider == provider))
        .where(KeptReceipt.created_at >= since)
        .order_by(KeptReceipt.id)
        .with_for_update())).all())


async def lock_recent(session: AsyncSession, since: datetime, limit: int) -> list[KeptReceipt]:
    """Rows kept since `since`, skipping those a check is applying right now."""
    return list((await session.scalars(
        select(KeptReceipt).where(KeptReceipt.created_at >= since).order_by(KeptReceipt.id).limit(limit)
        .with_for_update(skip_locked=True))).all())


async def lock_older_known(session: AsyncSession, before: datetime, since: datetime,
                           limit: int) -> list[KeptReceipt]:
    """Rows kept between `since` and `before` whose exact id a part not final yet has now."""
    return list((await session.scalars(older_known(before, since, limit))).all())


def older_known(before: datetime, since: datetime, limit: int) -> Any:
    """lock_older_known's statement. Each kept row's id is probed on the parts' and messages'
    upstream-id indexes (`OFFSET 0` keeps each EXISTS a probe per row): as `upstream_id IN (SELECT …
    WHERE status NOT IN …)` it read every message not final, 600 ms a sweep at 100,000 messages, and
    more the bigger the table."""
    def held_by(column: Any, status: Any) -> Any:
        return exists(select(literal(1)).where(column == KeptReceipt.upstream_id, status.not_in(_NOT_FINAL))
                      .offset(0))

    return (select(KeptReceipt)
            .where(KeptReceipt.created_at < before, KeptReceipt.created_at >= since)
            .where(or_(held_by(MessagePart.upstream_id, MessagePart.status),
                       held_by(Message.upstream_id, Message.status)))
            .order_by(KeptReceipt.id).limit(limit)
            .with_for_update(of=KeptReceipt, skip_locked=True))


async def known_upstream_ids(session: AsyncSession, wanted: set[str]) -> set[str]:
    """Which of these ids a part not final yet carries (a part row, or a one-part message itself)."""
    rows = list((await session.scalars(rows_holding(session, (MessagePart.upstream_id,), MessagePart.upstream_id,
                                                    wanted, MessagePart.status.not_in(_NOT_FINAL)))).all())
    rows += (await session.scalars(rows_holding(session, (Message.upstream_id,), Message.upstream_id, wanted,
                                                Message.status.not_in(_NOT_FINAL)))).all()
    return {u for u in rows if u is not None}


async def delete_kept(session: AsyncSession, ids: Sequence[int]) -> None:
    await session.execute(delete(KeptReceipt).where(one_of(session, KeptReceipt.id, ids)))


async def delete_expired(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(KeptReceipt).where(KeptReceipt.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)
