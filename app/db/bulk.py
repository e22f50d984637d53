"""Set-based writes: one statement for many rows.

On PostgreSQL the rows go as one JSON document (a text parameter, `orjson`): `insert_rows` is
`INSERT … SELECT … FROM json_to_recordset($1)` and `update_rows` is `UPDATE … FROM json_to_recordset($1)
WHERE key = …`, one statement and one round trip whatever the row count. Sent as one array per column
instead, asyncpg inspected every element (two `isinstance` checks against `collections.abc` each, ~7 %
of the gateway's CPU under load): the JSON form costs the client 3–5 µs a row instead of 8–13, and
PostgreSQL about the same (measured with 500-row updates of 8 columns). Values are typed by the
recordset's column list (text for strings, so that the column's own length check refuses a value too
long rather than a cast cutting it). SQLite (`make run`) has neither: there they are a multi-row
insert and an executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    FromClause,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import driver
from app.db.driver import as_sqlalchemy

_STATEMENTS: dict[tuple[str, tuple[str, ...]], Any] = {}
_PG: Any = postgresql.dialect()  # type: ignore[no-untyped-call]


class Built:
    """A statement built once per dialect (`build(pg)`, pg: whether on PostgreSQL) and reused: building a SELECT with a
    LATERAL join costs more Python than executing it does (~2.5 % of the gateway's CPU in the receipt
    path when rebuilt per batch). Its values come as named parameters (`any_of_param`, `holding_param`)."""

    def __init__(self, build: Callable[[bool], Any]) -> None:
        self._build = build
        self._by_dialect: dict[bool, Any] = {}

    def __call__(self, session: AsyncSession) -> Any:
        pg = session.get_bind().dialect.name == "postgresql"
        stmt = self._by_dialect.get(pg)
        if stmt is None:
            stmt = self._by_dialect[pg] = self._build(pg)
        return stmt

    async def rows(self, session: AsyncSession, params: dict[str, Any]) -> Sequence[Any]:
        """Run it in the session's transaction (on PostgreSQL on the driver: app/db/driver.py)."""
        return await driver.rows(session, self(session), params)


def _array(column: Any, name: str | None, values: Collection[Any] | None = None) -> Any:
    return bindparam(name, list(values) if values is not None else None, type_=ARRAY(_unbounded(column.type)))


def _any_of(column: Any, array: Any) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], column == any_(array))


def _holding(columns: Sequence[Any], column: Any, array: Any, *criteria: Any) -> Select[Any]:
    probes = func.unnest(array).table_valued("v").render_derived(name="u")
    found = select(*columns).where(column == probes.c.v, *criteria).offset(0).lateral("m")
    return select(*found.c).select_from(probes).join(found, true())


def one_of(session: AsyncSession, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values`, on PostgreSQL as `column = ANY($1)` with the values as one array: the same
    statement text whatever their number, so SQLAlchemy's compiled cache and asyncpg's prepared
    statements are reused, and no bind is rendered per value (an IN list of 1,000 is 1,000 binds,
    rendered on every execution). SQLite has no arrays: there it is IN."""
    if session.get_bind().dialect.name != "postgresql":
        return cast(ColumnElement[bool], column.in_(list(values)))
    return _any_of(column, _array(column, None, values))


def any_of_param(pg: bool, column: Any, name: str) -> ColumnElement[bool]:
    """`one_of` for a `Built` statement: the values are its parameter `name` (a list)."""
    if not pg:
        return cast(ColumnElement[bool], column.in_(bindparam(name, expanding=True)))
    return _any_of(column, _array(column, name))


def rows_holding(session: AsyncSession, columns: Sequence[Any], column: Any, values: Collection[Any],
                 *criteria: Any) -> Select[Any]:
    """`SELECT columns … WHERE column IN values AND criteria`, for a `column` whose index is not unique
    (an upstream id, a message's parts): on PostgreSQL one index probe per value,
    `FROM unnest($1) AS u(v), LATERAL (SELECT … WHERE column = u.v … OFFSET 0)`, whatever the table's
    statistics say. Given `column = ANY($1)` instead, a planner without fresh statistics (a table that
    grew by thousands of rows since it was last analysed, as every new deployment's does) counts ~1/200
    of the table per value and scans the whole table for a batch of a hundred (bench.run
    e2e-smpp-single, 20,000 messages: 3–20 ms a batch against 0.1–1 ms). `OFFSET 0` keeps the planner
    from flattening the subquery back into that same join. Each value's rows come once per time it is
    given: pass distinct values. SQLite: `IN`."""
    if session.get_bind().dialect.name != "postgresql":
        return select(*columns).where(column.in_(list(values)), *criteria)
    return _holding(columns, column, _array(column, None, values), *criteria)


def holding_param(pg: bool, columns: Sequence[Any], column: Any, name: str, *criteria: Any) -> Select[Any]:
    """`rows_holding` for a `Built` statement: the values are its parameter `name` (a list of distinct
    values); `criteria` may hold parameters of their own (`bindparam`)."""
    if not pg:
        return select(*columns).where(column.in_(bindparam(name, expanding=True)), *criteria)
    return _holding(columns, column, _array(column, name), *criteria)


def _unbounded(kind: Any) -> Any:
    # `$1::VARCHAR(34)[]` would cut a longer value to 34 characters without a word (an explicit cast
    # truncates); a text array leaves the check to the column, which refuses it as a plain INSERT does.
    # JSON goes as text too (serialised here, cast back in the statement): json[] has no driver codec.
    return Text() if isinstance(kind, String | JSON) else kind


def _base(table: Table, column: str) -> Any:
    kind = table.c[column].type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _sql_type(table: Table, column: str) -> str:
    kind = _base(table, column)
    if isinstance(kind, String):  # Text, VARCHAR(n): the column checks the length (a cast would cut)
        return "text"
    if isinstance(kind, JSON):
        return "json"
    return str(kind.compile(dialect=_PG))


def _recordset(table: Table, columns: tuple[str, ...], param: str = ":rows") -> str:
    return f"json_to_recordset(CAST({param} AS json)) AS v(" + ", ".join(
        f'"{c}" {_sql_type(table, c)}' for c in columns) + ")"


def _insert_sql(table: Table, columns: tuple[str, ...], param: str = ":rows") -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(f'v."{c}"' for c in columns)
    return f'INSERT INTO "{table.name}" ({names}) SELECT {values} FROM {_recordset(table, columns, param)}'


def _json_insert(table: Table, columns: tuple[str, ...], skip_conflicts: bool = False) -> Any:
    key = (table.name + (":skip" if skip_conflicts else ""), columns)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        sql = _insert_sql(table, columns)
        if skip_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        stmt = _STATEMENTS[key] = text(sql)
    return stmt


_TOGETHER: dict[tuple[tuple[str, tuple[str, ...]], ...], str] = {}


async def insert_together(connection: Any, writes: Sequence[tuple[FromClause, Sequence[dict[str, Any]]]]) -> None:
    """Insert each `(table, rows)` of `writes`, in that order, as ONE statement on an asyncpg connection
    (`engine.driver_connection`): the ones before the last are data-modifying CTEs of the last INSERT, so
    all of them land or none does (a later table may point at an earlier one's rows: the foreign keys
    are checked at the end of the statement). Outside a transaction this is one round trip and its own
    commit. Rows as for `insert_rows`; a `(table, [])` write is left out."""
    present = [(cast(Table, table), *_uniform(cast(Table, table), rows)) for table, rows in writes if rows]
    if not present:
        return
    shape = tuple((table.name, columns) for table, _rows, columns in present)
    sql = _TOGETHER.get(shape)
    if sql is None:
        parts = [_insert_sql(table, columns, f"${i}::text") for i, (table, _rows, columns) in enumerate(present, 1)]
        sql = parts[-1] if len(parts) == 1 else "WITH " + ", ".join(
            f"w{i} AS ({part})" for i, part in enumerate(parts[:-1])) + " " + parts[-1]
        _TOGETHER[shape] = sql
    params = [_payload(table, rows, columns) for table, rows, columns in present]
    try:
        await connection.execute(sql, *params)
    except Exception as error:
        raise as_sqlalchemy(error, sql) from error


def _payload(table: Table, rows: Sequence[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """The rows as one JSON array of objects. Datetimes must carry their zone, as UtcDateTime demands
    of every value it binds (a naive one would be read in the session's time zone)."""
    for c in _datetime_columns(table, columns):
        for value in map(itemgetter(c), rows):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"naive datetime given to a UTC column ({table.name}.{c})")
    return orjson.dumps(rows).decode()


@lru_cache(maxsize=256)
def _datetime_columns(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in columns if isinstance(_base(table, c), DateTime))


def _with_defaults(table: Table, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the columns' Python-side defaults filled in where a row leaves them out, as the
    ORM would (a text statement applies none)."""
    missing = [c for c in table.columns if c.name not in rows[0] and c.default is not None
               and (c.default.is_scalar or c.default.is_callable)]
    if not missing:
        return list(rows)
    out: list[dict[str, Any]] = []
    for r in rows:
        row = dict(r)
        for c in missing:
            d: Any = c.default
            row[c.name] = d.arg if d.is_scalar else d.arg(None)
        out.append(row)
    return out


def _uniform(table: Table, rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The rows with their defaults, and the columns they all name (a ValueError if they do not)."""
    filled = _with_defaults(table, rows)
    columns = tuple(filled[0])
    if any(len(r) != len(columns) for r in filled):
        raise ValueError(f"every {table.name} row to insert needs the same columns")
    return filled, columns


async def insert_rows(session: AsyncSession, table: FromClause, rows: Sequence[dict[str, Any]],
                      skip_conflicts: bool = False) -> None:
    """Insert `rows` (dicts with the same keys, column names of `table`) in one statement; with
    `skip_conflicts`, rows that would break a unique key are left out (ON CONFLICT DO NOTHING)."""
    if not rows:
        return
    tbl = cast(Table, table)
    if session.get_bind().dialect.name != "postgresql":
        stmt: Any = insert(tbl)
        if skip_conflicts:
            stmt = sqlite.insert(tbl).on_conflict_do_nothing()
        await session.execute(stmt, list(rows))
        return
    rows, columns = _uniform(tbl, rows)
    await driver.execute(session, _json_insert(tbl, columns, skip_conflicts), {"rows": _payload(tbl, rows, columns)})


def _json_update(table: Table, key: str, columns: tuple[str, ...], only_if: tuple[str, ...]) -> Any:
    cache_key = (table.name + ":update:" + key + ":" + ",".join(only_if), columns)
    stmt = _STATEMENTS.get(cache_key)
    if stmt is None:
        sets = ", ".join(f'"{c}" = v."{c}"' for c in columns)
        conditions = "".join(f' AND t."{c}" = :_if_{c}' for c in only_if)
        returning = f' RETURNING t."{key}"' if only_if else ""
        stmt = text(f'UPDATE "{table.name}" AS t SET {sets} FROM {_recordset(table, (key, *columns))} '
                    f'WHERE t."{key}" = v."{key}"{conditions}{returning}').bindparams(
            *(bindparam(f"_if_{c}", type_=table.c[c].type) for c in only_if))
        _STATEMENTS[cache_key] = stmt
    return stmt


async def update_rows(session: AsyncSession, table: FromClause, key: str, rows: Sequence[dict[str, Any]],
                      only_if: dict[str, Any] | None = None) -> list[Any]:
    """Set, in each row of `table` whose `key` column equals a row's `key`, that row's other values.
    Every row has the same keys; a key that matches nothing changes nothing. With `only_if`
    (column → value), only rows that also hold those values change, and the keys of the rows changed
    are returned (otherwise an empty list)."""
    if not rows:
        return []
    tbl = cast(Table, table)
    columns = tuple(c for c in rows[0] if c != key)
    conditions = only_if or {}
    if session.get_bind().dialect.name != "postgresql":
        stmt: Any = update(tbl).where(tbl.c[key] == bindparam("_key"), *(tbl.c[c] == v for c, v in conditions.items()))
        stmt = stmt.values({c: bindparam(c) for c in columns})
        if not conditions:
            await session.execute(stmt, [{"_key": r[key], **{c: r[c] for c in columns}} for r in rows])
            return []
        changed: list[Any] = []
        for r in rows:  # SQLite: one statement a row, each saying whether it matched
            result = await session.execute(stmt.returning(tbl.c[key]), {"_key": r[key], **{c: r[c] for c in columns}})
            changed += list(result.scalars().all())
        return changed
    params: dict[str, Any] = {"rows": _payload(tbl, rows, (key, *columns))}
    params.update({f"_if_{c}": v for c, v in conditions.items()})
    stmt = _json_update(tbl, key, columns, tuple(conditions))
    if not conditions:
        await driver.execute(session, stmt, params)
        return []
    return [r[0] for r in await driver.rows(session, stmt, params)]
