"""What `make run` starts (`smsgw dev`): SQLite, the embedded broker and the simulator. The README's curl
reaches `delivered`, and a STOMP consumer of the embedded broker sees the one delivery report."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import stomp
from support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


class Collector(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.got = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.frames.append(frame)
        self.got.set()


async def test_dev_mode_send_to_report(tmp_path: Path) -> None:
    http, smsc, broker = free_port(), free_port(), free_port()
    env = {**os.environ, "SMSGW_PORT": str(http), "SMSGW_BROKER_URL": f"embedded://127.0.0.1:{broker}",
           "SMSGW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/dev.db", "SMSGW_LOG_LEVEL": "WARNING"}
    for k in ("SMSGW_CONFIG", "SMSGW_PROVIDERS", "SMSGW_ROUTES", "SMSGW_API_KEYS", "SMSGW_WEBHOOK_AUTH"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "dev", "--smsc-port", str(smsc)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", timeout=5) as client:
            for _ in range(150):
                try:
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("smsgw dev never became ready")
            conn = stomp.Connection([("127.0.0.1", broker)])
            listener = Collector()
            conn.set_listener("c", listener)
            await asyncio.to_thread(conn.connect, wait=True)
            await asyncio.to_thread(conn.subscribe, "/queue/delivery-report", 1)
            r = await client.post("/msg-client/send", headers={"X-API-Key": "dev-key"},
                                  json={"To": "+96170123456", "Body": "Hello from smsgw", "From": "Acme"})
            assert r.status_code == 200, r.text
            sid = r.json()["MessageSid"]
            assert await asyncio.to_thread(listener.got.wait, 20)
            await asyncio.sleep(0.5)
            status = (await client.get(f"/msg-client/messages/{sid}", headers={"X-API-Key": "dev-key"})).json()
            await asyncio.to_thread(conn.disconnect)
        assert status["Status"] == "delivered"
        assert len(listener.frames) == 1
        report = orjson.loads(listener.frames[0].body)
        assert report["MessageSID"] == sid and report["DeliveryStatus"] == "DELIVERED"
        assert listener.frames[0].headers["type"] == "smpp"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
