"""Durable commits: the ones after which someone outside is told "stored".

A PostgreSQL server may run with `synchronous_commit=off` (ours in tests does; some operators set it
for throughput): COMMIT then returns before the WAL reaches disk, and a crash of the server loses the
last commits. That is fine for bookkeeping the gateway can redo (claims, leases, publish marks), not for
a commit after which a client got 200 or an upstream got its acknowledgement (deliver_sm_resp, a
webhook's 200): that upstream will never send the report again. Those commits go through
`commit_durably`, which forces the flush for this transaction only, whatever the server default.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_DURABLE = text("SET LOCAL synchronous_commit = on")


async def commit_durably(session: AsyncSession) -> None:
    """Commit the session's transaction and return only once it is on disk (PostgreSQL; SQLite's
    commit already is, within its `synchronous` setting)."""
    if session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        # The setting is read at COMMIT time, so setting it last still covers the whole transaction.
        await session.execute(_DURABLE)
    await session.commit()
