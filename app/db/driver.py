"""Hot-path statements run on the session's own asyncpg connection, inside its transaction.

A statement built with SQLAlchemy (`bulk.Built`, `bulk.update_rows`' text statements, the claims) is
compiled once for asyncpg (its SQL with `$n` parameters, the names in their order) and then executed
by asyncpg directly: no SQLAlchemy execution context, result proxy, ORM row loading or greenlet hop
per execution, and no per-element bind processing of array parameters (bench.run e2e-smpp-single:
SQLAlchemy was in the stack for 18 % of the gateway's CPU, half of it ORM row loading; 100 message
rows locked and updated in one transaction cost the client 23 µs a row through the session, 11 on
the driver; bench/README.md, fifteenth session).

The statement joins the session's transaction: the unit of work still commits or rolls back, as
before. Rows come back as asyncpg Records (indexable and unpackable like SQLAlchemy rows, without
attribute access); the JSON codec is the one SQLAlchemy installs on every connection (orjson), so
JSON columns come back decoded, and timestamptz values come back aware, in UTC, as UtcDateTime gives
them. A constraint or a bad value is raised as the SQLAlchemy error a session would have raised; a
connection that fails in use is invalidated, so the pool never hands it out again.

SQLite (`make run`) has no asyncpg: there the statement goes through the session as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import TypeDecorator
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import invalidate_if_lost

_DIALECT: Any = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]
_REQUIRED = object()


class _Compiled:
    """A statement's SQL for asyncpg and how to turn named parameters into its positional ones."""

    __slots__ = ("binds", "sql")

    def __init__(self, stmt: Any) -> None:
        compiled = stmt.compile(dialect=_DIALECT)
        if "POSTCOMPILE" in compiled.string:  # an expanding IN: its SQL depends on the values
            raise ValueError("a statement with an expanding IN cannot be run on the driver")
        self.sql: str = compiled.string
        self.binds: list[tuple[str, Any, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            value = _REQUIRED if bind.required else bind.effective_value
            kind = bind.type
            self.binds.append((name, value, kind if isinstance(kind, TypeDecorator) else None))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for name, default, decorator in self.binds:
            value = params.get(name, default)
            if value is _REQUIRED:
                raise KeyError(f"no value for the parameter {name!r}")
            # Our own types (UtcDateTime: aware values only) check and convert as they would for a session.
            out.append(value if decorator is None else decorator.process_bind_param(value, _DIALECT))
        return out


_COMPILED: dict[int, tuple[Any, _Compiled]] = {}


def _compiled(stmt: Any) -> _Compiled:
    entry = _COMPILED.get(id(stmt))
    if entry is None or entry[0] is not stmt:  # (the statement is kept, so its id is never reused)
        entry = _COMPILED[id(stmt)] = (stmt, _Compiled(stmt))
    return entry[1]


def on_driver(session: AsyncSession) -> bool:
    """Whether this session's statements can run on the driver (PostgreSQL)."""
    return bool(session.get_bind().dialect.name == "postgresql")


_HELD = "smsgw.driver"  # session.info key: the connection of the session's current transaction


async def _driver(session: AsyncSession) -> tuple[Any, Any]:
    """(the session's connection, its asyncpg connection) with the session's transaction begun on it.
    SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its first statement: a statement of ours
    that comes first begins it the same way, and the session's commit or rollback then ends it.

    The pair is kept on the session for the transaction's next statements: asking the session for its
    connection is two greenlet hops, ~30 µs. A commit or rollback closes that connection (the session
    takes a new one for its next transaction), so a closed one is asked for again."""
    held: tuple[Any, Any, Any] | None = session.info.get(_HELD)
    if held is not None:
        conn, driver, adapted = held
        if not conn.closed and not conn.invalidated and adapted._transaction is not None:
            return conn, driver
    conn = await session.connection()
    fairy = await conn.get_raw_connection()
    adapted = cast(Any, fairy.dbapi_connection)
    if adapted._transaction is None:  # the adapter's own lazy BEGIN (private: SQLAlchemy is pinned, and
        await adapted._start_transaction()  # tests/integration/test_driver_statements.py checks it)
    session.info[_HELD] = (conn, fairy.driver_connection, adapted)
    return conn, fairy.driver_connection


async def rows(session: AsyncSession, stmt: Any, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
    """The rows `stmt` returns (a SELECT, or a write with RETURNING), run in the session's transaction."""
    if not on_driver(session):
        return (await session.execute(stmt, dict(params or {}))).all()
    return await _run(session, stmt, params, fetch=True)  # type: ignore[no-any-return]


async def execute(session: AsyncSession, stmt: Any, params: Mapping[str, Any] | None = None) -> None:
    """Run `stmt` (a write without RETURNING) in the session's transaction."""
    if not on_driver(session):
        await session.execute(stmt, dict(params or {}))
        return
    await _run(session, stmt, params, fetch=False)


async def _run(session: AsyncSession, stmt: Any, params: Mapping[str, Any] | None, fetch: bool) -> Any:
    compiled = _compiled(stmt)
    args = compiled.args(params or {})
    conn, driver = await _driver(session)
    try:
        return await (driver.fetch if fetch else driver.execute)(compiled.sql, *args)
    except BaseException as error:
        raise await _failed(conn, driver, error, compiled.sql) from error


async def _failed(conn: Any, driver: Any, error: BaseException, sql: str) -> BaseException:
    """The error to raise for a failed statement; a lost connection is invalidated first."""
    if await invalidate_if_lost(conn, driver, error):
        return error
    return as_sqlalchemy(error, sql) if isinstance(error, Exception) else error


def as_sqlalchemy(error: Exception, sql: str) -> Exception:
    """A constraint or a bad value refused by PostgreSQL as the SQLAlchemy error a session would have
    raised (IntegrityError, DataError); anything else (a lost connection) as it is."""
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    if sqlstate.startswith("23"):
        return sa_exc.IntegrityError(sql, None, error)
    if sqlstate.startswith("22"):
        return sa_exc.DataError(sql, None, error)
    return error
