"""The async engine and session factory. Built in the FastAPI lifespan (or a CLI command), never
at import time.

Every PostgreSQL connection of ours commits synchronously (`synchronous_commit=on` as a connection
setting), whatever the server's default: a server running `synchronous_commit=off` makes a COMMIT
visible to other sessions before its WAL is on disk, so a crash can take back a row that another
session already acted on outside the database — a 200 answered for a message, a deliver_sm_resp or a
webhook 200 after a receipt was stored, a report published from an outcome. `make faults`'
postgres-kill scenario shows those losses without this setting.

They also plan with `random_page_cost=1.1`: the gateway's working set (the messages of the last hours,
their indexes) is in memory, where an index probe costs about what a sequential page read does. With
the server's default of 4, a table of tens of thousands of rows already looked cheaper to scan whole
than to probe a hundred times: the outcome write's `UPDATE … FROM json_to_recordset` joined by a
sequential scan of `message` (105 of 257 sampled executions in `bench.run e2e-smpp-single`, 20,000
messages; 8 of 62 with this setting).

A pooled connection is checked before use only when it sat idle for IDLE_PING_SECONDS or more (a
restarted or failed-over server, a connection dropped by a firewall while idle). SQLAlchemy's
`pool_pre_ping` checks every checkout, and on asyncpg its check is three round trips (BEGIN, `;`,
ROLLBACK): on a busy gateway that was a third of PostgreSQL's transactions and, waiting on a loaded
event loop, tens of milliseconds before each of the dispatcher's outcome writes. A connection that
dies while in use fails that one statement; SQLAlchemy then replaces every connection the pool held
from before (a disconnect invalidates the pool), and the callers' retries take new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

CONNECT_TIMEOUT_SECONDS = 10.0
IDLE_PING_SECONDS = 2.0


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    # JSON columns (outbox headers and bodies, TLVs) decoded by orjson: the stdlib's json.loads was ~1 % of
    # the gateway's CPU under load (the outbox claim reads every report's headers).
    kwargs: dict[str, Any] = {"echo": echo, "json_deserializer": orjson.loads}
    if is_sqlite(url):
        # One writer at a time in SQLite: wait for the lock rather than fail with "database is locked".
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # A database that does not answer must cost a request seconds, not asyncpg's default minute.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                      connect_args={"timeout": CONNECT_TIMEOUT_SECONDS,
                                    "server_settings": {"synchronous_commit": "on", "random_page_cost": "1.1"}})
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _sqlite_pragmas_on_connect(engine)
    else:
        _ping_when_idle(engine)
    return engine


def _sqlite_pragmas_on_connect(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a connection at checkout only if it was idle IDLE_PING_SECONDS or more (module docstring)."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_conn.ping()
        except Exception as error:  # the pool drops this connection and checks out another
            raise exc.DisconnectionError(f"idle connection is gone: {error}") from error


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg connection, outside any transaction: each statement run on it is
    its own transaction, committed (synchronously, as every connection of ours) when it returns. One
    round trip for a one-statement write, where a session's costs three (BEGIN, the statement, COMMIT)
    and SQLAlchemy's compile and greenlet hops. A connection that fails in use is dropped from the
    pool, not handed to the next caller."""
    conn = await engine.connect()
    try:
        fairy = await conn.get_raw_connection()
        try:
            yield fairy.driver_connection
        except BaseException as error:
            await invalidate_if_lost(conn, fairy.driver_connection, error)
            raise
    finally:
        if conn.in_transaction():  # never on this path; if it were, its rollback is shielded as SQLAlchemy's is
            await conn.__aexit__(None, None, None)
        else:
            await conn.close()  # back to the pool in this step (see UnitSession)


async def invalidate_if_lost(conn: AsyncConnection, driver: Any, error: BaseException) -> bool:
    """Invalidate `conn` (the pool never hands it out again) if `error`, raised on its asyncpg connection
    `driver`, left it unusable; whether it did."""
    if not connection_lost(error, driver):
        return False
    await conn.invalidate(error if isinstance(error, Exception) else None)
    return True


def connection_lost(error: BaseException, driver: Any) -> bool:
    """Whether `error`, raised by a statement on asyncpg connection `driver`, leaves it unusable.
    InternalClientError is asyncpg finding its protocol in a state the statement cannot start from: a
    backend terminated while the connection sat in a transaction between two statements raises it
    ("cannot switch to state 12; another operation (2) is in progress") until asyncpg closes it."""
    import asyncpg

    return bool(driver.is_closed()) or isinstance(
        error, asyncio.CancelledError | OSError | TimeoutError | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError | asyncpg.OperatorInterventionError | asyncpg.InternalClientError)


def postgres_engine(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine | None:
    """The engine behind `sessions` when it is PostgreSQL's (for `driver_connection`); None on SQLite."""
    bind = sessions.kw.get("bind")
    return bind if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql" else None


class UnitSession(AsyncSession):
    """The services' unit of work. Leaving `async with` after the commit closes the session in the same
    step: SQLAlchemy's exit runs `close()` in a task of its own and waits for it (so that a cancellation
    cannot abandon a rollback halfway), which costs the caller two turns of the event loop even when
    there is nothing to send. On a loaded gateway a turn is milliseconds (bench.run e2e-smpp-single:
    the accept batcher's connection came back 17 ms after its commit, its INSERT took 11). A session with
    a transaction still open (an exception inside the block) has a rollback to send: that exit is
    SQLAlchemy's own."""

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        if self.in_transaction():
            await super().__aexit__(type_, value, traceback)
        else:
            await self.close()  # no transaction: nothing to roll back, no I/O, nothing a cancellation can cut


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=UnitSession, expire_on_commit=False, autoflush=False)
