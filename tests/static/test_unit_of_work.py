"""One place commits: the services (app/services/) own every transaction (STYLE.md habit 1).

The check reads every module under app/ with `ast` and names each place outside app/services/ that
ends or owns a transaction: a `.commit` (called or handed on as a callback), a `.begin()` (SQLAlchemy's
`engine.begin()` / `session.begin()` / `sessionmaker.begin()` commit when their block ends, so they
are a commit by another spelling), a literal `COMMIT`/`BEGIN`/`END` given to `text()`/`execute()`, and
`isolation_level="AUTOCOMMIT"` (every statement its own commit). It is proven to bite on planted code.
It goes by the attribute's name, so a method that is not a database transaction's is better named
otherwise (`send_commit_frame`, not `commit`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = "app/services/"

_OWNER_ATTRS = frozenset({"commit", "begin"})
_SQL_CALLS = frozenset({"text", "execute", "exec_driver_sql"})
_TRANSACTION_SQL = re.compile(r"\s*(commit|begin|end)\b", re.IGNORECASE)


def offences(source: str, path: str) -> list[str]:
    """`path:line what` for each place in `source` that commits or owns a transaction."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Attribute) and node.attr in _OWNER_ATTRS:
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0] if node.args else None
            if (name in _SQL_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str)
                    and _TRANSACTION_SQL.match(first.value)):
                found.append((node.lineno, f"SQL {first.value.strip()!r}"))
            for kw in node.keywords:
                if (kw.arg == "isolation_level" and isinstance(kw.value, ast.Constant)
                        and str(kw.value.value).upper() == "AUTOCOMMIT"):
                    found.append((node.lineno, "AUTOCOMMIT"))
    return [f"{path}:{line} {what}" for line, what in sorted(found)]


def scan(root: Path) -> list[str]:
    """Every offence in the modules under root/app outside app/services/."""
    found: list[str] = []
    for file in sorted((root / "app").rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        if rel.startswith(SERVICES):
            continue
        found += offences(file.read_text(encoding="utf-8"), rel)
    return found


def test_nothing_outside_the_services_commits() -> None:
    found = scan(ROOT)
    assert not found, "commit in a service (app/services/) instead:\n" + "\n".join(found)


@pytest.mark.parametrize("planted", [
    "async def f(s):\n    await s.commit()\n",
    "async def f(sessions):\n    async with sessions() as s:\n        await s.commit()\n",
    "def f(session):\n    session.sync_session.commit()\n",
    "async def f(engine):\n    async with engine.begin() as conn:\n        pass\n",
    "async def f(sessions):\n    async with sessions.begin() as s:\n        pass\n",
    "def f(s, later):\n    later(s.commit)\n",  # handed on: it commits wherever it is called
    "from sqlalchemy import text\nasync def f(s):\n    await s.execute(text('COMMIT'))\n",
    "async def f(conn):\n    await conn.exec_driver_sql('begin')\n",
    "from sqlalchemy.ext.asyncio import create_async_engine\nE = create_async_engine('x', isolation_level='AUTOCOMMIT')\n",
])
def test_a_planted_commit_is_found(planted: str) -> None:
    assert offences(planted, "app/api/planted.py"), planted


@pytest.mark.parametrize("innocent", [
    "def f(self):\n    self._on_commit()\n",  # a hook run after the service committed
    "def f(frame):\n    return frame('COMMIT', {'transaction': 't1'})\n",  # a STOMP frame, not SQL
    "def on_message_begin(self):\n    pass\n",
    "async def f(s, q):\n    await s.execute(q)\n",
])
def test_what_is_not_a_commit_is_not_found(innocent: str) -> None:
    assert offences(innocent, "app/api/innocent.py") == []


def test_a_planted_module_breaks_the_rule_and_services_may_commit(tmp_path: Path) -> None:
    commit = "async def f(s):\n    await s.commit()\n"
    for where in ("app/api/planted.py", "app/db/deep/planted.py", "app/services/store.py",
                  "app/dispatch/dispatcher.py"):
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / where).write_text(commit)
    assert scan(tmp_path) == ["app/api/planted.py:2 .commit", "app/db/deep/planted.py:2 .commit",
                                               "app/dispatch/dispatcher.py:2 .commit"]
