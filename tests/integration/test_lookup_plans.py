"""The schema the migrations build is the models' (tables.py), and the receipt path's lookups by a
non-unique column stay on their index on a table PostgreSQL has not analysed yet (a new deployment's,
the benchmark's): `bulk.rows_holding` against `column = ANY($1)`, which the planner turned into a
scan of the whole table."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import create_database, drop_database
from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.bulk import one_of, rows_holding
from app.db.engine import create_engine, session_factory
from app.db.kept_store import older_known
from app.db.tables import Base, Message, utcnow

ROWS = 20_000


async def test_the_migrated_schema_is_the_models() -> None:
    url = await create_database()
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    finally:
        await engine.dispose()
        await drop_database(url)
    assert diffs == []


async def _filled() -> tuple[str, Any, async_sessionmaker[AsyncSession], list[str]]:
    """A fresh database whose message table holds ROWS sent messages, never analysed."""
    url = await create_database()
    engine = create_engine(url, pool_size=1)
    sessions = session_factory(engine)
    tag = secrets.token_hex(3)
    async with sessions() as s:
        await s.execute(text(
            "INSERT INTO message (sid, status, to_number, body, encoding, segments, long_message_mode, flash,"
            " channel, provider, attempts, created_at, updated_at, sent_at, upstream_id)"
            " SELECT 'SM' || md5(:tag || g), 'sent', '+4477' || lpad(g::text, 7, '0'), 'x', 'GSM7', 1, 'split',"
            " false, 'smpp', 'smsc', 1, now(), now(), now(), :tag || lpad(to_hex(g), 8, '0')"
            " FROM generate_series(1, :n) g"), {"tag": tag, "n": ROWS})
        await s.commit()
    return url, engine, sessions, [tag + format(g, "08x") for g in range(5_000, 5_150)]


async def _plan(sessions: async_sessionmaker[AsyncSession], stmt: Select[*tuple[Any, ...]]) -> str:
    async with sessions() as s:
        compiled = stmt.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        return "\n".join(r[0] for r in (await s.execute(text(f"EXPLAIN {compiled}"))).all())


async def test_an_upstream_id_lookup_probes_the_index_on_a_table_never_analysed() -> None:
    url, engine, sessions, ids = await _filled()
    try:
        async with sessions() as s:
            assert (await s.execute(text("SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables"
                                         " WHERE relname = 'message'"))).one() == (None, None)
            columns = (Message.sid, Message.upstream_id)
            probed = rows_holding(s, columns, Message.upstream_id, ids)
            assert sorted(r[1] for r in (await s.execute(probed)).all()) == ids
            plain = select(*columns).where(one_of(s, Message.upstream_id, ids))
        # What the planner does with the plain form here is why rows_holding exists: if this stops
        # holding (a PostgreSQL that plans it well), the helper can go.
        assert "Seq Scan on message" in await _plan(sessions, plain)
        plan = await _plan(sessions, probed)
        assert "ix_message_upstream" in plan and "Seq Scan on message" not in plan, plan
    finally:
        await engine.dispose()
        await drop_database(url)


async def test_the_gateway_plans_for_data_in_memory(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW random_page_cost"))).scalar() == "1.1"
            assert (await conn.execute(text("SHOW synchronous_commit"))).scalar() == "on"
    finally:
        await engine.dispose()


async def test_the_kept_receipt_sweep_probes_ids_instead_of_reading_every_message() -> None:
    url, engine, sessions, ids = await _filled()
    try:
        async with sessions() as s:
            await s.execute(text("UPDATE message SET status = 'sending' WHERE upstream_id = :u"), {"u": ids[0]})
            await s.execute(text(
                "INSERT INTO kept_receipt (provider, upstream_id, status, source, created_at, expires_at)"
                " VALUES ('smsc', :u, 'delivered', 'test', now() - interval '5 minutes', now() + interval '1 day')"),
                {"u": ids[0]})
            await s.commit()
        now = utcnow()
        async with sessions() as s:
            found = (await s.scalars(older_known(now - timedelta(minutes=2), now - timedelta(hours=1), 10))).all()
            assert [k.upstream_id for k in found] == [ids[0]]
        plan = await _plan(sessions, older_known(now - timedelta(minutes=2), now - timedelta(hours=1), 10))
        assert "ix_message_upstream" in plan and "Seq Scan on message " not in plan, plan
    finally:
        await engine.dispose()
        await drop_database(url)
