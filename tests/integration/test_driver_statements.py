"""app/db/driver: hot-path statements run by asyncpg on the session's connection, in its transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support.backends import terminate_backend

from app.db import driver
from app.db.bulk import insert_rows
from app.db.engine import session_factory
from app.db.tables import Message, MessagePart
from app.services import receipts

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def _message(sid: str) -> dict[str, object]:
    return {"sid": sid, "api_key_id": None, "batch_sid": None, "status": "sent", "to_number": "+96170123456",
            "from_addr": None, "body": "hi", "encoding": "GSM7", "segments": 1, "long_message_mode": "split",
            "flash": False, "validity_period": None, "channel": "smpp", "status_callback": None, "attempts": 1,
            "send_at": None, "due_at": None, "created_at": NOW, "updated_at": NOW}


@pytest.fixture
def one_session(one_connection: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(one_connection)


_STATUS_OF = select(Message.status).where(Message.sid == bindparam("sid"))
_SET_STATUS = update(Message).where(Message.sid == bindparam("sid")).values(status=bindparam("status"))
_TXID = text("SELECT txid_current()")


async def _status(sessions: async_sessionmaker[AsyncSession], sid: str) -> str:
    async with sessions() as s:
        return str((await driver.rows(s, _STATUS_OF, {"sid": sid}))[0][0])


async def test_a_statement_on_the_driver_is_the_sessions_to_commit_or_roll_back(
        one_session: async_sessionmaker[AsyncSession]) -> None:
    async with one_session() as s:
        await insert_rows(s, Message.__table__, [_message("SMdrv1")])
        await s.commit()
    async with one_session() as s:  # first in its transaction: it begins it
        await driver.execute(s, _SET_STATUS, {"sid": "SMdrv1", "status": "delivered"})
        await s.rollback()
    assert await _status(one_session, "SMdrv1") == "sent"
    async with one_session() as s:
        await driver.execute(s, _SET_STATUS, {"sid": "SMdrv1", "status": "delivered"})
        await s.commit()
    assert await _status(one_session, "SMdrv1") == "delivered"


async def test_driver_and_session_statements_share_one_transaction(
        one_session: async_sessionmaker[AsyncSession]) -> None:
    async with one_session() as s:
        first = (await driver.rows(s, _TXID))[0][0]
        assert (await s.execute(_TXID)).scalar_one() == first
        assert (await driver.rows(s, _TXID))[0][0] == first
        await s.commit()
        assert (await driver.rows(s, _TXID))[0][0] != first  # the next transaction, begun by the driver


async def test_after_a_commit_the_next_driver_statement_is_in_the_next_transaction(
        one_session: async_sessionmaker[AsyncSession]) -> None:
    """A session's later transaction gets a connection of its own: the driver never runs a statement on
    the one the commit gave back, nor outside a transaction."""
    async with one_session() as s:
        await insert_rows(s, Message.__table__, [_message("SMdrv4")])
        await s.commit()
        await driver.execute(s, _SET_STATUS, {"sid": "SMdrv4", "status": "delivered"})
        await s.rollback()
        assert (await driver.rows(s, _STATUS_OF, {"sid": "SMdrv4"}))[0][0] == "sent"
        await driver.execute(s, _SET_STATUS, {"sid": "SMdrv4", "status": "failed"})
        await s.commit()
    assert await _status(one_session, "SMdrv4") == "failed"


async def test_rows_come_back_as_the_session_reads_them(one_session: async_sessionmaker[AsyncSession]) -> None:
    """JSON decoded, timestamps aware and in UTC, columns in the statement's order: the receipt path's
    SELECTs give the same rows on the driver as through the session."""
    async with one_session() as s:
        await insert_rows(s, Message.__table__, [_message("SMdrv2")])
        await insert_rows(s, MessagePart.__table__, [
            {"message_sid": "SMdrv2", "part_no": 1, "provider": "smsc", "upstream_id": "abc", "status": "sent",
             "submitted_at": NOW, "tlvs": {"network_error_code": "030001", "n": [1, 2]}, "done_at": None}])
        await s.commit()
    async with one_session() as s:
        through_session = (await s.execute(receipts._STATES_OF(s), {"sids": ["SMdrv2"]})).all()
        on_driver = await receipts._STATES_OF.rows(s, {"sids": ["SMdrv2"]})
        window = NOW - timedelta(hours=1)
        parts_session = (await s.execute(receipts._PARTS_BY_UPSTREAM(s), {"ids": ["abc"], "window": window})).all()
        parts_driver = await receipts._PARTS_BY_UPSTREAM.rows(s, {"ids": ["abc"], "window": window})
    assert [tuple(r) for r in on_driver] == [tuple(r) for r in through_session]
    assert on_driver[0][5] == {"network_error_code": "030001", "n": [1, 2]}
    assert [tuple(r) for r in parts_driver] == [tuple(r) for r in parts_session]
    submitted = parts_driver[0][6]
    assert submitted == NOW and submitted.utcoffset() == timedelta(0)


async def test_a_naive_datetime_is_refused_as_the_session_refuses_it(
        one_session: async_sessionmaker[AsyncSession]) -> None:
    async with one_session() as s:
        with pytest.raises(ValueError, match="naive"):
            await receipts._PARTS_BY_UPSTREAM.rows(s, {"ids": ["abc"], "window": datetime(2026, 1, 1)})


async def test_a_missing_parameter_is_an_error_not_a_null(one_session: async_sessionmaker[AsyncSession]) -> None:
    async with one_session() as s:
        with pytest.raises(KeyError, match="status"):
            await driver.execute(s, _SET_STATUS, {"sid": "SMdrv1"})


async def test_a_constraint_is_the_sessions_integrity_error_and_the_session_recovers(
        one_session: async_sessionmaker[AsyncSession]) -> None:
    async with one_session() as s:
        await insert_rows(s, Message.__table__, [_message("SMdrv3")])
        await s.commit()
    async with one_session() as s:
        with pytest.raises(IntegrityError):
            await insert_rows(s, Message.__table__, [_message("SMdrv3")])
        await s.rollback()
        await driver.execute(s, _SET_STATUS, {"sid": "SMdrv3", "status": "failed"})
        await s.commit()
    assert await _status(one_session, "SMdrv3") == "failed"


async def test_a_connection_lost_under_a_driver_statement_leaves_the_pool(
        one_session: async_sessionmaker[AsyncSession], module_db_url: str) -> None:
    """A driver statement bypasses SQLAlchemy's error handling: a connection whose backend died fails
    that statement and is invalidated, so the pool (of one) gives the next session a new one."""
    async with one_session() as s:
        pid = (await driver.rows(s, text("SELECT pg_backend_pid()")))[0][0]
        await terminate_backend(module_db_url, pid)
        # Which error depends on whether asyncpg has read the backend's goodbye yet (CI saw the last).
        with pytest.raises((OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                            asyncpg.InternalClientError)):
            await driver.rows(s, text("SELECT pg_backend_pid()"))
    async with one_session() as s:
        assert (await driver.rows(s, text("SELECT pg_backend_pid()")))[0][0] != pid


async def test_a_connection_asyncpg_finds_in_a_broken_state_leaves_the_pool(
        one_session: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    """What CI saw once for a backend terminated between two statements of a transaction: asyncpg's
    protocol refuses to start the next one (InternalClientError). That connection is dropped too."""
    async with one_session() as s:
        pid = (await driver.rows(s, text("SELECT pg_backend_pid()")))[0][0]

        async def broken(*_args: object, **_kwargs: object) -> None:
            raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")

        monkeypatch.setattr(asyncpg.connection.Connection, "fetch", broken)
        with pytest.raises(asyncpg.InternalClientError):
            await driver.rows(s, text("SELECT pg_backend_pid()"))
        monkeypatch.undo()
    async with one_session() as s:
        assert (await driver.rows(s, text("SELECT pg_backend_pid()")))[0][0] != pid
