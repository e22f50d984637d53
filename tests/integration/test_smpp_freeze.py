"""An SMSC that freezes (SIGSTOP: its connections stay open, nothing is answered) while messages flow.

What was in flight and unanswered when it froze is all that may be resubmitted, each message at most
once: a connection that stopped answering takes no further submit_sm. The CI run freezes for 10 s with
enquire_link and the response timeout set low; the issue's scenario (60 s, 5,000 messages, the
default 30 s / 15 s timings) runs with SMSGW_TEST_FREEZE_SECONDS=60 SMSGW_TEST_FREEZE_MESSAGES=5000
SMSGW_TEST_FREEZE_DEFAULT_TIMINGS=1.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

from conftest import api_settings, running_app
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.servers import free_port
from support.smsc_process import SmscProcess

from app.db.tables import Message

WINDOW = 50
FREEZE_SECONDS = float(os.environ.get("SMSGW_TEST_FREEZE_SECONDS", "10"))
MESSAGES = int(os.environ.get("SMSGW_TEST_FREEZE_MESSAGES", "1000"))
DEFAULT_TIMINGS = os.environ.get("SMSGW_TEST_FREEZE_DEFAULT_TIMINGS") == "1"


async def statuses(sessions: async_sessionmaker[AsyncSession], sids: list[str]) -> Counter[str]:
    async with sessions() as s:
        return Counter((await s.scalars(select(Message.status).where(Message.sid.in_(sids)))).all())


async def test_smsc_freeze_resubmits_only_what_was_in_flight_each_once(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    smsc = await SmscProcess("--receipt-delay", "0.05").start()
    timings = {} if DEFAULT_TIMINGS else {"enquire_link_interval": 4.0, "response_timeout": 3.0}
    settings = api_settings(
        module_db_url, broker_url=f"embedded://127.0.0.1:{free_port()}", max_recipients=10_000,
        providers=[{"name": "smsc-main", "type": "smpp", "port": smsc.port, "system_id": "smppclient1",
                    "password": "password", "window": WINDOW, **timings}],
        routes=[{"channel": "smpp", "providers": ["smsc-main"]}], webhook_auth="token:x",
        retry_base_seconds=0.2, retry_max_seconds=2.0, retry_max_attempts=1000,
    )
    try:
        async with running_app(settings, start_workers=True) as client:
            for _ in range(200):
                if (await client.get("/health/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            sids: list[str] = []
            for start in range(0, MESSAGES, 1000):
                to = [f"+1415{2_000_000 + i:07d}" for i in range(start, min(start + 1000, MESSAGES))]
                r = await client.post("/msg-client/send", json={"To": to, "Body": "freeze"})
                assert r.status_code == 200, r.text
                sids += [m["MessageSid"] for m in r.json()["Messages"]]
            deadline = time.monotonic() + 60
            while (await smsc.stats())["submit_sm"] < MESSAGES // 5:
                assert time.monotonic() < deadline, "messages did not start flowing"
                await asyncio.sleep(0.05)
            smsc.freeze()
            await asyncio.sleep(FREEZE_SECONDS)
            smsc.thaw()
            deadline = time.monotonic() + 120 + FREEZE_SECONDS
            while (counts := await statuses(module_sessions, sids))["delivered"] < len(sids):
                assert time.monotonic() < deadline, f"not all delivered: {counts}"
                await asyncio.sleep(0.2)
            stats = await smsc.stats()
    finally:
        smsc.stop()
    print(f"freeze {FREEZE_SECONDS:.0f}s, {MESSAGES} messages: submit_sm {stats['submit_sm']}, "
          f"duplicate submits {stats['duplicate_submits']}, max copies {stats['max_copies']}, "
          f"enquire_link {stats['enquire_links']}, binds {stats['binds']}")
    assert stats["max_copies"] <= 2  # a message is resubmitted at most once
    assert stats["duplicate_submits"] <= WINDOW  # and only what was in flight when the SMSC froze
