"""Shared fixtures.

Integration tests run on a real PostgreSQL: `make test` starts a throwaway cluster on loopback and
exports SMSGW_TEST_PG_URL. Alembic migrates one template database per test session, once; every
database a test asks for is a copy of it (`CREATE DATABASE … TEMPLATE`, ~50 ms instead of a second of
migrations), dropped at the end. `db_url` is that database; `sqlite_url` a fresh SQLite file
for the smoke subset. `sim` is the bundled SMSC simulator, set by the test's `simulator` mark.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.db.engine import create_engine, session_factory
from app.db.migrate import alembic_config, upgrade_to_head
from app.simulator import SmscSimulator

if TYPE_CHECKING:
    import httpx

    from app.config import Settings

PG_ADMIN_URL = os.environ.get("SMSGW_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:55432/postgres")
STOMP_URL = os.environ.get("SMSGW_TEST_STOMP_URL", "stomp://127.0.0.1:61613")


async def _admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


def _url_of(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


_template: str | None = None
_template_lock = asyncio.Lock()


async def _migrated_template() -> str:
    """This session's template database, migrated to head the first time it is asked for."""
    global _template
    async with _template_lock:
        if _template is None:
            name = "smsgw_tpl_" + secrets.token_hex(4)
            await _admin(f'CREATE DATABASE "{name}"')
            await asyncio.to_thread(upgrade_to_head, _url_of(name))
            _template = name
        return _template


async def create_database() -> str:
    """A new PostgreSQL database migrated to head (a copy of the session's template); returns its URL."""
    template = await _migrated_template()
    name = "smsgw_test_" + secrets.token_hex(4)
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return _url_of(name)


@pytest.fixture(scope="session", autouse=True)
async def _drop_template() -> AsyncIterator[None]:
    yield
    if _template is not None:
        await _admin(f'DROP DATABASE IF EXISTS "{_template}" WITH (FORCE)')


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def database_at(revision: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A new PostgreSQL database migrated to `revision` only (not a copy of the template: for a test of a
    later migration on the data an earlier schema held), with an engine of one connection; dropped after."""
    name = "smsgw_test_mig_" + secrets.token_hex(4)
    await _admin(f'CREATE DATABASE "{name}"')
    url = _url_of(name)
    engine = create_engine(url, pool_size=1)
    try:
        await asyncio.to_thread(command.upgrade, alembic_config(url), revision)
        yield url, engine
    finally:
        await engine.dispose()
        await drop_database(url)


@pytest.fixture(scope="session")
async def db_url() -> AsyncIterator[str]:
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.fixture(scope="module")
async def module_db_url() -> AsyncIterator[str]:
    """A database of the test module's own, for tests whose workers claim every due message."""
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.fixture(scope="module")
async def module_sessions(module_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    eng = create_engine(module_db_url, pool_size=5)
    yield session_factory(eng)
    await eng.dispose()


@pytest.fixture
async def one_connection(module_db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds one connection: a test can tell whether it is the same one again."""
    eng = create_engine(module_db_url, pool_size=1)
    yield eng
    await eng.dispose()


@pytest.fixture
async def private_db() -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A database of this test alone, so its table statistics count only this test's writes."""
    url = await create_database()
    engine = create_engine(url, pool_size=3)
    yield url, engine
    await engine.dispose()
    await drop_database(url)


@pytest.fixture(scope="session")
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'smsgw.db'}"
    upgrade_to_head(url)
    yield url


API_KEY = "test-key-0123456789"
OTHER_API_KEY = "test-key-other-account"  # a second account, for tenancy tests
ADMIN_API_KEY = "test-key-admin-sees-all"
WEBHOOK_TOKEN = "hook-secret-token"
TWILIO_TOKEN = "twilio-auth-token-xyz"


def api_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for API tests: two channels, a Twilio provider (for signatures), every webhook mode."""
    from app.config import Settings

    values: dict[str, object] = {
        "database_url": database_url,
        "api_keys": f"{API_KEY},{OTHER_API_KEY}",
        "admin_api_keys": ADMIN_API_KEY,
        "webhook_auth": f"twilio-signature,token:{WEBHOOK_TOKEN},basic:hook:hook-pass",
        "public_url": "http://testserver",
        "providers": [
            {"name": "smsc-main", "type": "smpp", "system_id": "smppclient1", "password": "password"},
            {"name": "twilio", "type": "http", "dialect": "twilio", "url": "http://127.0.0.1:9",
             "account_sid": "AC" + "0" * 32, "auth_token": TWILIO_TOKEN, "default_from": "+14155550000"},
        ],
        "routes": [{"channel": "smpp", "providers": ["smsc-main"]},
                   {"channel": "http", "providers": ["twilio"]}],
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def running_app(settings: Settings, start_workers: bool | None = False) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app with its lifespan entered, and an httpx client bound to it (`start_workers=None`:
    as `settings.workers_enabled` says)."""
    import httpx

    from app.main import create_app

    app = create_app(settings, start_workers=start_workers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     headers={"X-API-Key": API_KEY}) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


# A test that hangs ends the run HANG_SECONDS later with every thread's stack on the real stderr, instead
# of stalling CI until its own limit with nothing to show. The slowest test takes about a minute.
HANG_SECONDS = float(os.environ.get("SMSGW_TEST_HANG_SECONDS", "300"))
_hang_report: list[IO[str]] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "simulator(**settings): SimulatorConfig fields for the `sim` fixture")
    _hang_report.append(os.fdopen(os.dup(2), "w"))  # before pytest captures fd 2 for each test


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=_hang_report[0])
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[SmscSimulator]:
    """The bundled SMSC simulator for one test (support.simulator), set as its `simulator` mark says."""
    mark = request.node.get_closest_marker("simulator")
    # imported here: bench.send_cost and bench.bind_cost import this module without tests/ on sys.path
    from support.simulator import start_simulator

    async with start_simulator(**(mark.kwargs if mark is not None else {})) as simulator:
        yield simulator


@pytest.fixture(scope="session")
async def api(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(api_settings(db_url)) as client:
        yield client


@pytest.fixture
async def sqlite_api(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(api_settings(sqlite_url)) as client:
        yield client
