"""A gateway process killed with SIGKILL while reports flow, then started again: every message ends
delivered and every report reaches ActiveMQ; a repeat is possible only with the same dedupe header."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import stomp
from conftest import API_KEY, STOMP_URL
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.servers import free_port
from support.stomp_consumer import Collector

from app.db.tables import Message, utcnow
from app.domain.ids import new_message_sid
from app.simulator import SimulatorConfig, SmscSimulator

ROOT = Path(__file__).resolve().parents[2]
N = 3000


async def test_sigkill_mid_publish_loses_no_report(module_db_url: str,
                                                   module_sessions: async_sessionmaker[AsyncSession]) -> None:
    sim = SmscSimulator(SimulatorConfig(port=0, receipt_delay=0.01, dest_rules={}, reject_dest_rules={}))
    await sim.start()
    queue = "kill-restart-" + secrets.token_hex(4)
    host, port = STOMP_URL.split("://", 1)[1].rsplit(":", 1)
    conn = stomp.Connection([(host, int(port))])
    listener = Collector()
    conn.set_listener("c", listener)
    await asyncio.to_thread(conn.connect, wait=True)
    conn.subscribe(f"/queue/{queue}", id=1, ack="auto")
    env = {
        **os.environ, "SMSGW_DATABASE_URL": module_db_url, "SMSGW_BROKER_URL": STOMP_URL,
        "SMSGW_DELIVERY_REPORT_QUEUE": queue, "SMSGW_API_KEYS": API_KEY, "SMSGW_WEBHOOK_AUTH": "token:x",
        "SMSGW_LOG_LEVEL": "WARNING", "SMSGW_DISPATCH_LEASE_SECONDS": "3",
        "SMSGW_PROVIDERS": orjson.dumps([{"name": "smsc-main", "type": "smpp", "port": sim.port,
                                          "system_id": "smppclient1", "password": "password", "window": 50}]).decode(),
        "SMSGW_ROUTES": orjson.dumps([{"channel": "smpp", "providers": ["smsc-main"]}]).decode(),
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    now = utcnow()
    sids = [new_message_sid() for _ in range(N)]
    async with module_sessions() as s:
        await s.execute(insert(Message), [
            {"sid": sid, "status": "queued", "to_number": f"+1666{i:07d}", "body": "k", "encoding": "GSM7",
             "segments": 1, "channel": "smpp", "due_at": now, "created_at": now, "updated_at": now}
            for i, sid in enumerate(sids)])
        await s.commit()
    proc = start()
    try:
        while True:  # kill it once some reports are out and many are not
            with listener.lock:
                published = len(listener.frames)
            if published > N // 10:
                break
            assert proc.poll() is None, "the gateway exited"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = start()
        deadline = asyncio.get_running_loop().time() + 120
        while asyncio.get_running_loop().time() < deadline:
            with listener.lock:
                got = {orjson.loads(f.body)["MessageSID"] for f in listener.frames}
            if got >= set(sids):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        await asyncio.to_thread(conn.disconnect)
        await sim.stop()
    with listener.lock:
        frames = list(listener.frames)
    seen = Counter(orjson.loads(f.body)["MessageSID"] for f in frames)
    assert set(seen) == set(sids), f"{len(set(sids) - set(seen))} reports missing"
    for f in frames:
        assert f.headers["smsgw-report-id"] == "report:" + orjson.loads(f.body)["MessageSID"]
    async with module_sessions() as s:
        statuses = Counter(dict((await s.execute(select(Message.status, func.count()).group_by(Message.status))).all()))
    assert statuses == Counter({"delivered": N})
    resubmitted = sum(1 for (dest, _), n in sim.submit_count_by_dest.items() if dest.startswith("1666") and n > 1)
    print(f"duplicate reports: {sum(n - 1 for n in seen.values())}, resubmitted to the SMSC: {resubmitted}")
