"""/metrics after real traffic through the SMSC simulator: messages by status and provider, submit
latency, binds up and in flight per bind, receipts matched/kept, outbox lag, HTTP latency, the event
loop's lag; and
/health/ready with its checks, 503 with the bind check false once the SMSC is gone."""

from __future__ import annotations

import asyncio
import re
import secrets

from conftest import STOMP_URL, api_settings, running_app
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.simulator import SimulatorConfig, SmscSimulator


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(re.search(rf'{k}="{re.escape(v)}"', line) for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_and_readiness(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    sim = SmscSimulator(SimulatorConfig(port=0, receipt_delay=0.02, dest_rules={}, reject_dest_rules={}))
    await sim.start()
    settings = api_settings(
        module_db_url, broker_url=STOMP_URL, delivery_report_queue="metrics-" + secrets.token_hex(4),
        providers=[{"name": "smsc-main", "type": "smpp", "port": sim.port, "system_id": "smppclient1",
                    "password": "password", "window": 5}],
        routes=[{"channel": "smpp", "providers": ["smsc-main"]}], webhook_auth="token:x")
    try:
        async with running_app(settings, start_workers=True) as client:
            for _ in range(100):
                if (await client.get("/health/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            sids = [(await client.post("/msg-client/send", json={"To": f"+1415555{i:04d}", "Body": "m"})).json()
                    ["MessageSid"] for i in range(3)]
            await client.post("/msg-client/delivery-notification", data={"MessageSid": "nobody", "SmsStatus": "sent"},
                              headers={"X-Webhook-Token": "x"})
            for _ in range(200):
                views = [(await client.get(f"/msg-client/messages/{sid}")).json() for sid in sids]
                if all(v["Status"] == "delivered" for v in views):
                    break
                await asyncio.sleep(0.05)
            text = (await client.get("/metrics")).text
            assert metric(text, "smsgw_messages_accepted_total", channel="smpp") == 3
            assert metric(text, "smsgw_message_status_total", status="delivered", provider="smsc-main") == 3
            assert metric(text, "smsgw_message_status_total", status="sent", provider="smsc-main") == 3
            assert (metric(text, "smsgw_submit_duration_seconds_count", provider="smsc-main") or 0) >= 3
            assert metric(text, "smsgw_provider_up", provider="smsc-main") == 1
            assert metric(text, "smsgw_smpp_bind_up", provider="smsc-main") == 1
            assert metric(text, "smsgw_smpp_bind_in_flight", provider="smsc-main") == 0
            # A receipt that overtook its submit_sm_resp is kept at arrival ( applied a moment later).
            matched = metric(text, "smsgw_receipts_total", result="matched") or 0
            kept = metric(text, "smsgw_receipts_total", result="kept") or 0
            assert matched + kept >= 4  # the three SMPP receipts and the webhook report for "nobody"
            assert kept >= 1
            assert metric(text, "smsgw_outbox_lag_seconds") is not None
            assert (metric(text, "smsgw_http_request_duration_seconds_count", method="POST") or 0) >= 3
            for _ in range(40):  # sampled every quarter second from the start
                if (metric(text, "smsgw_event_loop_lag_seconds_count") or 0) >= 1:
                    break
                await asyncio.sleep(0.05)
                text = (await client.get("/metrics")).text
            assert (metric(text, "smsgw_event_loop_lag_seconds_count") or 0) >= 1
            assert metric(text, "smsgw_event_loop_lag_seconds_bucket", le="+Inf") == \
                metric(text, "smsgw_event_loop_lag_seconds_count")
            ready = await client.get("/health/ready")
            checks = ready.json()["checks"]
            assert ready.status_code == 200 and checks["database"]["ok"] and checks["provider:smsc-main"]["ok"]
            assert "lag_seconds" in checks["outbox"] and checks["broker"]["connected"]

            await sim.stop()
            for _ in range(100):
                ready = await client.get("/health/ready")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 503
            assert ready.json()["checks"]["provider:smsc-main"]["ok"] is False
            assert metric((await client.get("/metrics")).text, "smsgw_smpp_bind_up", provider="smsc-main") == 0
    finally:
        await sim.stop()
