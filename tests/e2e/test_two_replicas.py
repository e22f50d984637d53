"""Two gateway processes (`smsgw serve`) on one PostgreSQL database and one SMSC: 5,000 messages,
each submitted exactly once, every one delivered, both replicas doing part of the work."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import orjson
from conftest import API_KEY, STOMP_URL
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.servers import free_port

from app.db.tables import Message, utcnow
from app.domain.ids import new_message_sid
from app.simulator import SimulatorConfig, SmscSimulator

ROOT = Path(__file__).resolve().parents[2]
N = 5000


async def test_two_replicas_submit_each_message_once(module_db_url: str,
                                                     module_sessions: async_sessionmaker[AsyncSession]) -> None:
    sim = SmscSimulator(SimulatorConfig(port=0, receipt_delay=0.01, dest_rules={}, reject_dest_rules={}))
    await sim.start()
    ports = [free_port(), free_port()]
    env = {
        **os.environ, "SMSGW_DATABASE_URL": module_db_url, "SMSGW_BROKER_URL": STOMP_URL,
        "SMSGW_DELIVERY_REPORT_QUEUE": "two-replicas-" + secrets.token_hex(4), "SMSGW_API_KEYS": API_KEY,
        "SMSGW_WEBHOOK_AUTH": "token:x", "SMSGW_LOG_LEVEL": "WARNING",
        "SMSGW_PROVIDERS": orjson.dumps([{"name": "smsc-main", "type": "smpp", "port": sim.port,
                                          "system_id": "smppclient1", "password": "password",
                                          "window": 50}]).decode(),
        "SMSGW_ROUTES": orjson.dumps([{"channel": "smpp", "providers": ["smsc-main"]}]).decode(),
    }
    procs = [subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(p)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for p in ports]
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for p in ports:
                for _ in range(200):
                    try:
                        if (await client.get(f"http://127.0.0.1:{p}/health/ready")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
        now = utcnow()
        rows = [{"sid": new_message_sid(), "status": "queued", "to_number": f"+1555{i:07d}", "body": "two",
                 "encoding": "GSM7", "segments": 1, "channel": "smpp", "due_at": now, "created_at": now,
                 "updated_at": now} for i in range(N)]
        async with module_sessions() as s:
            await s.execute(insert(Message), rows)
            await s.commit()
        deadline = asyncio.get_running_loop().time() + 180
        while asyncio.get_running_loop().time() < deadline:
            async with module_sessions() as s:
                done = await s.scalar(select(func.count()).select_from(Message).where(Message.status == "delivered"))
            if done == N:
                break
            await asyncio.sleep(0.5)
        async with module_sessions() as s:
            statuses = Counter(dict((await s.execute(select(Message.status, func.count()).group_by(Message.status))).all()))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await sim.stop()
    assert statuses == Counter({"delivered": N}), statuses
    counts = [n for (dest, _), n in sim.submit_count_by_dest.items() if dest.startswith("1555")]
    assert len(counts) == N and max(counts) == 1
    binds = sim.stats.to_dict().get("binds", 2)
    assert binds >= 2  # both replicas bound and shared the work
