"""`smsgw serve --workers 2`: each worker process logs as the single process does (JSON lines at the
configured level, through the redaction filter), not through logging's plain-text last resort."""

from __future__ import annotations

import asyncio

import orjson
from conftest import API_KEY
from support.gateway import Gateway, KeepAliveClient


async def test_every_worker_logs_json_lines_at_the_configured_level(module_db_url: str) -> None:
    gw = Gateway({"SMSGW_DATABASE_URL": module_db_url, "SMSGW_API_KEYS": API_KEY, "SMSGW_WORKERS_ENABLED": "false",
                  "SMSGW_WEBHOOK_AUTH": "token:workers", "SMSGW_LOG_LEVEL": "INFO", "SMSGW_LOG_FORMAT": "json"},
                 ("--workers", "2"))
    try:
        await gw.wait_listening()
        for _ in range(100):  # both workers up: each says so at INFO
            if gw.output().count("Application startup complete.") >= 2:
                break
            await asyncio.sleep(0.1)
        client = KeepAliveClient(gw.port, {"X-API-Key": API_KEY, "Content-Type": "application/json"})
        try:
            response = await client.request("POST", "/msg-client/send", orjson.dumps({"To": "+96170123456", "Body": "hi"}))
        finally:
            await client.close()
        assert response.status == 200
        sid = orjson.loads(response.body)["MessageSid"]
        for _ in range(50):  # a worker's line is written by its loop, a moment after the answer
            if sid in gw.output():
                break
            await asyncio.sleep(0.1)
        output = gw.output()
    finally:
        await gw.stop()
    lines = [orjson.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    started = [line for line in lines if line["msg"] == "Application startup complete."]
    assert len(started) == 2, output
    accepted = [line for line in lines if line["msg"] == "message accepted"]
    assert [line["message_sid"] for line in accepted] == [sid], output
    assert API_KEY not in output
