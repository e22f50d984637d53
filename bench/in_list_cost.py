"""What a list of values costs the gateway in a WHERE clause: `column IN (…)` against `bulk.one_of`.

    python -m bench.in_list_cost [--values N] [--statements S]

Runs S selects by `message.upstream_id`, each with a list of about N values (its length varies a
little, as a receipt batch's does), on a fresh database copied from the test template on the shared
PostgreSQL (tests/conftest.py). Printed per form: the client's CPU (this process: SQLAlchemy and
asyncpg) per value, and the wall time per statement. An IN list is N binds, rendered on every
execution and prepared again for every new length; `one_of` is one array parameter and one statement.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.bulk import one_of
from app.db.engine import create_engine, session_factory
from app.db.tables import Message
from tests.conftest import create_database, drop_database  # the template database

Where = Callable[[AsyncSession, list[str]], ColumnElement[bool]]
FORMS: dict[str, Where] = {
    "IN (…)": lambda s, v: Message.upstream_id.in_(v),
    "one_of (= ANY)": lambda s, v: one_of(s, Message.upstream_id, v),
}


async def measure(values: int, statements: int) -> dict[str, Any]:
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
    finally:
        await engine.dispose()
        await drop_database(url)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--values", type=int, default=1000)
    p.add_argument("--statements", type=int, default=200)
    args = p.parse_args()
    for label, r in asyncio.run(measure(args.values, args.statements)).items():
        print(f"{label:16} client CPU {r['client_cpu_us_per_value']:6.2f} µs per value, "
              f"{r['wall_ms_per_statement']:6.2f} ms per statement")


if __name__ == "__main__":
    main()
