"""Revocation does not lag (issue 12 item 4): `smsgw keys revoke` while two `smsgw serve` processes hold
the key in their caches; both answer 401 within 2 s (PostgreSQL NOTIFY). Also the KeyStore on its own:
at once on the process that revoked, and within the 1 s fallback on SQLite."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import API_KEY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.processes import serve, smsgw, stop, wait_live
from support.servers import free_port

from app.db.engine import create_engine, session_factory
from app.services.api_keys import FALLBACK_TTL, KeyStore, create_key, revoke_key

BOUND = 2.0


async def _new_key(sessions: async_sessionmaker[AsyncSession], name: str, admin: bool = False) -> tuple[str, int]:
    async with sessions() as s:
        key, row = await create_key(s, name, admin=admin)
        await s.commit()
    return key, row.id


async def test_revoked_key_stops_on_two_replicas_within_two_seconds(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    env = {**os.environ, "SMSGW_DATABASE_URL": module_db_url, "SMSGW_API_KEYS": API_KEY,
           "SMSGW_WORKERS_ENABLED": "false", "SMSGW_WEBHOOK_AUTH": "token:x", "SMSGW_LOG_LEVEL": "WARNING"}
    key, key_id = await _new_key(module_sessions, "crm")
    urls, procs = [], []
    try:
        for i in range(2):
            port = free_port()
            procs.append(serve(port, env, tmp_path / f"replica{i}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        for i, url in enumerate(urls):
            await wait_live(url, tmp_path / f"replica{i}.log")
        async with httpx.AsyncClient(timeout=5, headers={"X-API-Key": key}) as client:
            await asyncio.sleep(1.5)  # the listeners are up; the key is then cached for LIVE_TTL
            for url in urls:
                assert (await client.get(f"{url}/msg-client/messages")).status_code == 200

            code, _, err = await smsgw("keys", "revoke", str(key_id), env=env)
            revoked = time.monotonic()
            assert code == 0, err
            took: dict[str, float] = {}
            while len(took) < len(urls) and time.monotonic() - revoked < 10:
                for url in urls:
                    if url not in took and (await client.get(f"{url}/msg-client/messages")).status_code == 401:
                        took[url] = time.monotonic() - revoked
                await asyncio.sleep(0.02)
    finally:
        for proc in procs:
            stop(proc)
    assert len(took) == 2 and max(took.values()) <= BOUND, took
    print(f"revocation seen after {sorted(round(t, 3) for t in took.values())} s")


async def test_keystore_drops_a_key_revoked_elsewhere_on_the_notification(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    engine = create_engine(module_db_url, pool_size=2)
    store = KeyStore(session_factory(engine), engine)
    store.start()
    try:
        async with module_sessions() as s:
            key, row = await create_key(s, "elsewhere")
            await s.commit()
        for _ in range(50):  # until the listener is live
            if store._live:
                break
            await asyncio.sleep(0.1)
        assert store._live
        assert await store.lookup(key) is not None
        async with module_sessions() as s:  # another process's revoke: only the NOTIFY reaches this store
            assert await revoke_key(s, row.id)
            await s.commit()
        started = time.monotonic()
        while await store.lookup(key) is not None:
            assert time.monotonic() - started < FALLBACK_TTL / 2, "not dropped by the notification"
            await asyncio.sleep(0.01)
    finally:
        await store.stop()
        await engine.dispose()


async def test_keystore_revoke_is_immediate_in_its_own_process(module_db_url: str) -> None:
    engine = create_engine(module_db_url, pool_size=2)
    store = KeyStore(session_factory(engine))  # no listener at all: only its own revoke can tell it
    try:
        async with store._sessions() as s:
            key, row = await create_key(s, "here")
            await s.commit()
        assert await store.lookup(key) is not None
        assert await store.revoke(row.id)
        assert await store.lookup(key) is None
    finally:
        await engine.dispose()


@pytest.mark.sqlite
async def test_on_sqlite_a_revoked_key_stops_within_the_fallback_ttl(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    store = KeyStore(session_factory(engine), engine)
    store.start()  # nothing to listen to on SQLite
    try:
        async with store._sessions() as s:
            key, row = await create_key(s, "sqlite")
            await s.commit()
        assert await store.lookup(key) is not None
        async with store._sessions() as s:
            assert await revoke_key(s, row.id)
            await s.commit()
        await asyncio.sleep(FALLBACK_TTL + 0.05)
        assert await store.lookup(key) is None
    finally:
        await store.stop()
        await engine.dispose()


async def test_cli_keys_status_and_send_follow_the_account_rules(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    env = {**os.environ, "SMSGW_DATABASE_URL": module_db_url, "SMSGW_API_KEYS": API_KEY,
           "SMSGW_WORKERS_ENABLED": "false", "SMSGW_WEBHOOK_AUTH": "token:x", "SMSGW_LOG_LEVEL": "WARNING"}
    code, out, err = await smsgw("keys", "create", "--name", "ops", "--admin", env=env)
    assert code == 0 and "admin" in out, err
    admin = next(line for line in out.splitlines() if line.startswith("sk_"))
    other, _ = await _new_key(module_sessions, "other")
    port = free_port()
    proc = serve(port, env, tmp_path / "gateway.log")
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_live(url, tmp_path / "gateway.log")
        cli = {**env, "SMSGW_URL": url}
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()  # scheduled: no worker needed
        code, out, err = await smsgw("send", "--to", "+14155550800", "--body", "mine", "--send-at", later,
                                     "--api-key", API_KEY, env=cli)
        assert code == 0, out + err
        sid = str(orjson.loads(out)["MessageSid"])
        code, out, _ = await smsgw("status", sid, "--api-key", API_KEY, env=cli)
        assert code == 0 and '"Body": "mine"' in out
        code, out, _ = await smsgw("status", sid, "--api-key", other, env=cli)
        assert code == 1 and "not_found" in out and "mine" not in out
    finally:
        stop(proc)
    code, out, _ = await smsgw("keys", "list", env=env)
    lines = {line.split("\t")[1]: line.split("\t") for line in out.splitlines()}
    assert lines["env"][2] == "-" and lines["env"][3] == "account"  # a chosen key shows no prefix
    assert lines["ops"][3] == "admin" and lines["other"][3] == "account"
    assert lines["ops"][2].startswith("sk_") and len(lines["ops"][2].rstrip("…")) * 4 <= len(admin)
