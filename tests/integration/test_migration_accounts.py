"""Migration 0002 on a database with data from 0001 (PostgreSQL): chosen keys lose their clear-text
prefix, generated ones keep theirs, every key becomes a plain account, old messages keep their text;
and the downgrade puts a send_request's text back on its messages."""

from __future__ import annotations

import asyncio

from alembic import command
from conftest import database_at
from sqlalchemy import text

from app.db.migrate import alembic_config, upgrade_to_head


async def test_upgrade_blanks_chosen_key_prefixes_and_keeps_messages() -> None:
    async with database_at("0001") as (url, engine):
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO api_key (name, key_hash, prefix, created_at) VALUES "
                "('env', 'h1', 'dev-key', now()), ('crm', 'h2', 'sk_AbCdE', now()), ('old', 'h3', 'mysecret', now())"))
            await conn.execute(text(
                "INSERT INTO message (sid, status, to_number, body, encoding, segments, long_message_mode, flash, "
                "channel, attempts, created_at, updated_at) VALUES ('SMold', 'queued', '+1', 'kept text', 'GSM7', 1, "
                "'split', false, 'smpp', 0, now(), now())"))
        await asyncio.to_thread(upgrade_to_head, url)
        async with engine.connect() as conn:
            keys: dict[str, str] = dict((await conn.execute(text("SELECT name, prefix FROM api_key"))).all())
            admins = (await conn.execute(text("SELECT count(*) FROM api_key WHERE is_admin"))).scalar()
            body = (await conn.execute(text("SELECT body FROM message WHERE sid = 'SMold'"))).scalar()
        assert keys == {"env": "", "crm": "sk_AbCdE", "old": ""}
        assert admins == 0 and body == "kept text"

        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO send_request (sid, body, status_callback, created_at) "
                                    "VALUES ('SMreq', 'shared', 'https://8.8.8.8/cb', now())"))
            await conn.execute(text(
                "INSERT INTO message (sid, batch_sid, status, to_number, encoding, segments, long_message_mode, "
                "flash, channel, attempts, created_at, updated_at) VALUES ('SMnew', 'SMreq', 'queued', '+2', "
                "'GSM7', 1, 'split', false, 'smpp', 0, now(), now())"))
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0001")
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT body, status_callback FROM message WHERE sid = 'SMnew'"))).one()
        assert tuple(row) == ("shared", "https://8.8.8.8/cb")
