"""What the way values are bound costs, client and server, on a fresh database copied from the test
template on the shared PostgreSQL (tests/conftest.py).

    python -m bench.bind_cost [--values N] [--statements S] [--rows R]

1. A list of values in a WHERE: S selects by `message.upstream_id`, each with about N values (the
   length varies a little, as a receipt batch's does), as `column IN (…)` and as `bulk.one_of`
   (`= ANY($1)`). An IN list is N binds, rendered on every execution and prepared again for every new
   length; `one_of` is one array parameter and one statement.
2. Rows written in one statement: S/5 INSERTs of R `message` rows (22 columns, as /send writes them),
   one array per column (`unnest`) against one JSON document (`json_to_recordset`, what `bulk.insert_rows`
   sends).

Printed per form: the client's CPU (this process: SQLAlchemy and asyncpg) and the rest of the wall
time (PostgreSQL's work, on loopback), per value or per row.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import bulk
from app.db.bulk import one_of
from app.db.engine import create_engine, session_factory
from app.db.tables import Message
from tests.conftest import create_database, drop_database  # the template database

Where = Callable[[AsyncSession, list[str]], ColumnElement[bool]]
FORMS: dict[str, Where] = {
    "IN (…)": lambda s, v: Message.upstream_id.in_(v),
    "one_of (= ANY)": lambda s, v: one_of(s, Message.upstream_id, v),
}


def _message_rows(n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [{"sid": "SM" + secrets.token_hex(16), "api_key_id": 1, "batch_sid": None, "status": "sending",
             "to_number": "+15550002222", "from_addr": "Acme", "body": "Your code is 123456", "encoding": "GSM7",
             "segments": 1, "long_message_mode": "split", "flash": False, "validity_period": None,
             "channel": "smpp", "provider": None, "status_callback": None, "attempts": 1, "send_at": None,
             "due_at": None, "lease_owner": "bench", "lease_expires_at": now, "created_at": now,
             "updated_at": now} for _ in range(n)]


def _as_arrays(rows: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    table = Message.__table__
    columns = tuple(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    stmt = text(f'INSERT INTO "message" ({names}) SELECT * FROM unnest('
                + ", ".join(f":{c}" for c in columns) + f") AS v({names})").bindparams(
        *(bindparam(c, type_=ARRAY(bulk._unbounded(table.c[c].type))) for c in columns))
    return stmt, {c: [r[c] for r in rows] for c in columns}


def _as_json(rows: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    columns = tuple(rows[0])
    table = cast(Table, Message.__table__)  # a declarative class's __table__ is typed FromClause
    return bulk._json_insert(table, columns), {"rows": bulk._payload(table, rows, columns)}


async def _rows_cost(sessions: async_sessionmaker[AsyncSession], n: int, statements: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, form in (("unnest arrays", _as_arrays), ("json_to_recordset", _as_json)) * 2:  # twice, interleaved
        cpu = wall = 0.0
        for _ in range(statements):
            stmt, params = form(_message_rows(n))
            async with sessions() as s:
                c, w = time.process_time(), time.perf_counter()
                await s.execute(stmt, params)
                cpu, wall = cpu + time.process_time() - c, wall + time.perf_counter() - w
                await s.commit()
        out[label] = {"client_cpu_us_per_row": 1e6 * cpu / statements / n,
                      "rest_us_per_row": 1e6 * (wall - cpu) / statements / n}
    return out


async def measure(values: int, statements: int, rows: int = 0) -> dict[str, Any]:
    url = await create_database()
    engine = create_engine(url, 2)
    sessions = session_factory(engine)
    ids = ["SM" + secrets.token_hex(16) for _ in range(values + 8)]
    out: dict[str, Any] = {}
    try:
        for label, where in FORMS.items():
            async with sessions() as s:
                for i in range(30):  # warm-up: caches, prepared statements
                    await s.execute(select(Message.sid).where(where(s, ids[: values + i % 7])))
                cpu, wall = time.process_time(), time.perf_counter()
                for i in range(statements):
                    await s.execute(select(Message.sid).where(where(s, ids[: values + i % 7])))
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[label] = {"client_cpu_us_per_value": 1e6 * cpu / statements / (values + 3),
                          "wall_ms_per_statement": 1e3 * wall / statements}
        if rows:
            out.update(await _rows_cost(sessions, rows, max(statements // 5, 5)))
    finally:
        await engine.dispose()
        await drop_database(url)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--values", type=int, default=1000)
    p.add_argument("--statements", type=int, default=200)
    p.add_argument("--rows", type=int, default=500, help="rows per INSERT (0: skip the second measurement)")
    args = p.parse_args()
    for label, r in asyncio.run(measure(args.values, args.statements, args.rows)).items():
        if "client_cpu_us_per_value" in r:
            print(f"{label:18} client CPU {r['client_cpu_us_per_value']:6.2f} µs per value, "
                  f"{r['wall_ms_per_statement']:6.2f} ms per statement")
        else:
            print(f"{label:18} client CPU {r['client_cpu_us_per_row']:6.2f} µs per row, "
                  f"PostgreSQL (the rest of the wall time) {r['rest_us_per_row']:6.2f} µs per row")


if __name__ == "__main__":
    main()
