"""Every statement about the outbox (`outbox_event`) and the broker attempts (`outbox_attempt`); queries
only, never a commit: the transactions are app/services/outbox_work.py's.

A row costs two row versions: its INSERT (written by the change that causes it) and its DELETE once
published. On PostgreSQL the broker publisher's claim is that DELETE (`take_due`): the rows are locked
(`FOR UPDATE SKIP LOCKED`, so other publishers skip them), gone when the claiming transaction commits
and back, untouched, when it rolls back. The HTTP sender locks its rows with a SELECT instead
(`lock_due`), since each one ends differently (deleted, retried later, given up). SQLite (`make run`)
has no row locks and one process: there the rows are read first and deleted at the end
(`delete_events`), in the same transaction that records the outcome.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import driver
from app.db.bulk import Built, one_of, update_rows
from app.db.tables import OutboxAttempt, OutboxEvent

_EVENT = cast(Table, OutboxEvent.__table__)
_ATTEMPT = cast(Table, OutboxAttempt.__table__)
_COLUMNS = (_EVENT.c.id, _EVENT.c.kind, _EVENT.c.destination, _EVENT.c.headers, _EVENT.c.body,
            _EVENT.c.dedupe_key, _EVENT.c.message_sid, _EVENT.c.attempts, _EVENT.c.available_at)


@dataclass(slots=True)
class OutboxRow:
    """An outbox row as the publishers read it (a plain row, no ORM object)."""

    id: int
    kind: str
    destination: str
    headers: dict[str, Any]
    body: str
    dedupe_key: str
    message_sid: str | None
    attempts: int
    available_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    owner: str
    event_ids: tuple[int, ...]
    ledger_key: str = ""
    created_at: datetime | None = None


def ids_never_reused(session: AsyncSession) -> bool:
    """Whether an outbox id, once deleted, is never given to a new row (PostgreSQL's sequence). SQLite
    gives a new row the highest id in use plus one: one just deleted comes back."""
    return session.get_bind().dialect.name == "postgresql"


def locks_rows(session: AsyncSession) -> bool:
    """Whether claims lock rows (PostgreSQL), so that `take_due` can delete them at once."""
    return session.get_bind().dialect.name == "postgresql"


_NOW = bindparam("now", type_=_EVENT.c.available_at.type)
_LIMIT = bindparam("limit", type_=Integer())


def _due(kinds: Collection[str]) -> list[ColumnElement[bool]]:
    # `published_at IS NULL` matches the partial index and leaves given-up HTTP rows out; a lease is
    # only ever set by a process of an older version (rolling upgrade): its rows wait for it.
    kind = _EVENT.c.kind == next(iter(kinds)) if len(kinds) == 1 else _EVENT.c.kind.in_(list(kinds))
    return [_EVENT.c.published_at.is_(None), kind, _EVENT.c.available_at <= _NOW,
            or_(_EVENT.c.lease_expires_at.is_(None), _EVENT.c.lease_expires_at < _NOW)]


def _oldest_due(pg: bool, kinds: Collection[str], after: bool, lock: bool, columns: Sequence[Any]) -> Any:
    """The SELECT of up to `:limit` rows' `columns` due at `:now`, oldest first (past
    (`:after_at`, `:after_id`) when `after`), locked (`FOR UPDATE SKIP LOCKED`) when `lock`.

    On PostgreSQL with several kinds it is one ordered scan per kind, merged: the index is
    (kind, available_at, id), so `kind IN (…) ORDER BY available_at, id LIMIT n` cannot follow its order
    and would read and sort every pending row for n of them (EXPLAIN, 5,000 pending: Seq Scan + Sort).
    Each kind's scan reads at most `limit` entries; what a kind's scan locked beyond the merged `limit`
    stays untouched and is free again when the transaction ends."""
    def scan(of: Collection[str], cols: Sequence[Any]) -> Any:
        stmt = select(*cols).where(*_due(of))
        if after:  # the index range starts past the deleted rows' entries not yet vacuumed
            stmt = stmt.where(tuple_(_EVENT.c.available_at, _EVENT.c.id) > tuple_(
                bindparam("after_at", type_=_EVENT.c.available_at.type), bindparam("after_id", type_=Integer())))
        stmt = stmt.order_by(_EVENT.c.available_at, _EVENT.c.id).limit(_LIMIT)
        return stmt.with_for_update(skip_locked=True) if lock else stmt

    if len(kinds) == 1 or not pg:
        return scan(kinds, columns)
    wanted = [_EVENT.c[n] for n in sorted({c.name for c in columns} | {"available_at", "id"})]
    # Each scan a subquery of its own: PostgreSQL refuses FOR UPDATE in a UNION's own branches.
    branches = [scan([k], wanted).subquery(f"due_{n}") for n, k in enumerate(sorted(kinds))]
    merged = union_all(*(select(*b.c) for b in branches)).subquery("due")
    return (select(*(merged.c[c.name] for c in columns)).order_by(merged.c.available_at, merged.c.id)
            .limit(_LIMIT))


def _build_claim(pg: bool, how: str, kinds: tuple[str, ...], after: bool) -> Any:
    if how == "take" and pg:
        due = _oldest_due(pg, kinds, after, True, [_EVENT.c.id])
        # `= ANY(ARRAY(…))`: the ids are found first, then deleted through the primary key; with
        # `IN (…)` the planner may join them against a Seq Scan of the whole table instead.
        return delete(_EVENT).where(_EVENT.c.id == any_(func.array(due.scalar_subquery()))).returning(*_COLUMNS)
    return _oldest_due(pg, kinds, after, how == "lock", _COLUMNS)


# The claims' statements, built once per shape (building one cost more Python than running it).
_CLAIMS: dict[tuple[str, tuple[str, ...], bool], Built] = {}


def _claim(session: AsyncSession, how: str, kinds: Collection[str], after: bool) -> Any:
    key = (how, tuple(sorted(kinds)), after)
    built = _CLAIMS.get(key)
    if built is None:
        built = _CLAIMS[key] = Built(functools.partial(_build_claim, how=how, kinds=key[1], after=after))
    return built(session)


def _rows(result: Sequence[Any]) -> list[OutboxRow]:
    rows = [OutboxRow(i, kind, destination, dict(headers or {}), body, key, sid, int(attempts or 0), at)
            for i, kind, destination, headers, body, key, sid, attempts, at in result]  # _COLUMNS' order
    rows.sort(key=lambda r: r.id)  # RETURNING keeps no order; publish oldest first
    return rows


async def take_due(session: AsyncSession, kinds: Collection[str], limit: int, now: datetime,
                   after: tuple[datetime, int] | None = None) -> list[OutboxRow]:
    """Up to `limit` due rows, oldest first (after `after`, an (available_at, id) already passed, when
    given). PostgreSQL: deleted in this one statement (locked until the transaction ends; other claimers
    skip them). SQLite: only read (see `delete_events`)."""
    params: dict[str, Any] = {"now": now, "limit": limit}
    if after is not None:
        params.update(after_at=after[0], after_id=after[1])
    return _rows(await driver.rows(session, _claim(session, "take", kinds, after is not None), params))


async def lock_due(session: AsyncSession, kinds: Collection[str], limit: int, now: datetime) -> list[OutboxRow]:
    """Up to `limit` due rows, oldest first, locked until the transaction ends (PostgreSQL)."""
    return _rows(await driver.rows(session, _claim(session, "lock", kinds, False), {"now": now, "limit": limit}))


async def delete_events(session: AsyncSession, ids: Collection[int]) -> None:
    if ids:
        await session.execute(delete(_EVENT).where(one_of(session, _EVENT.c.id, ids)))


async def record_failures(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Rows that failed: each dict has `id`, `attempts`, `last_error`, `available_at`, `published_at`
    (set only when given up). One statement for all of them."""
    await update_rows(session, _EVENT, "id", rows)


async def pending_count(session: AsyncSession, kinds: Collection[str]) -> int:
    return int(await session.scalar(select(func.count()).select_from(_EVENT).where(
        _EVENT.c.published_at.is_(None), _EVENT.c.kind.in_(list(kinds)))) or 0)


async def oldest_pending(session: AsyncSession, kinds: Collection[str]) -> datetime | None:
    """When the oldest row still to publish was written (None when there is none)."""
    oldest: datetime | None = await session.scalar(select(func.min(OutboxEvent.created_at)).where(
        OutboxEvent.published_at.is_(None), OutboxEvent.kind.in_(list(kinds))))
    if oldest is not None and oldest.tzinfo is None:  # SQLite stores naive UTC
        oldest = oldest.replace(tzinfo=UTC)
    return oldest


async def attempt_records(session: AsyncSession) -> list[AttemptRecord]:
    """Every attempt record: one per publisher running (for its batch in flight, or finished) and those
    whose batch did not commit. The table holds a handful of rows, so it is read whole."""
    result = await session.execute(select(_ATTEMPT.c.id, _ATTEMPT.c.owner, _ATTEMPT.c.event_ids,
                                          _ATTEMPT.c.ledger_key, _ATTEMPT.c.created_at))
    return [AttemptRecord(r.id, r.owner, tuple(int(i) for i in r.event_ids), r.ledger_key, r.created_at)
            for r in result.all()]


async def add_attempt(session: AsyncSession, owner: str, event_ids: Sequence[int], now: datetime,
                      ledger_key: str) -> int:
    stmt = (insert(_ATTEMPT).values(owner=owner, event_ids=list(event_ids), created_at=now, ledger_key=ledger_key)
            .returning(_ATTEMPT.c.id))
    return int((await session.execute(stmt)).scalar_one())


async def reuse_attempt(session: AsyncSession, attempt_id: int, event_ids: Sequence[int], now: datetime,
                        ledger_key: str) -> bool:
    """Rewrite attempt record `attempt_id` (one whose batch committed) for a new batch; False when it is
    gone (cleared as finished by another publisher): then the caller writes a new one."""
    stmt = (update(_ATTEMPT).where(_ATTEMPT.c.id == attempt_id)
            .values(event_ids=list(event_ids), created_at=now, ledger_key=ledger_key).returning(_ATTEMPT.c.id))
    return (await session.execute(stmt)).first() is not None


async def existing_events(session: AsyncSession, ids: Collection[int]) -> set[int]:
    """Which of these outbox rows still exist (committed, or locked by a claim not yet committed)."""
    if not ids:
        return set()
    return set((await session.scalars(select(_EVENT.c.id).where(one_of(session, _EVENT.c.id, ids)))).all())


async def drop_unchanged_attempts(session: AsyncSession, records: Collection[AttemptRecord]) -> None:
    """Delete these attempt records, each only if it still carries the ledger key it was read with: one
    rewritten since for a new batch (`reuse_attempt`) stays."""
    if records:
        await session.execute(delete(_ATTEMPT).where(or_(*(
            (_ATTEMPT.c.id == rec.id) & (_ATTEMPT.c.ledger_key == rec.ledger_key) for rec in records))))


async def drop_attempts(session: AsyncSession, ids: Collection[int]) -> None:
    if ids:
        await session.execute(delete(_ATTEMPT).where(one_of(session, _ATTEMPT.c.id, ids)))


async def rewrite_attempt(session: AsyncSession, attempt_id: int, event_ids: Sequence[int]) -> None:
    await session.execute(update(_ATTEMPT).where(_ATTEMPT.c.id == attempt_id).values(event_ids=list(event_ids)))
