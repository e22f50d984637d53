"""A 30 s ActiveMQ outage while reports keep coming: the outbox publisher tries once per backoff period,
whatever wakes it, and says so in two log lines. On an ActiveMQ of this module's own (its own
directory and ports), so stopping it disturbs nothing else."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.outbox import unpublished, wait_published, write_reports
from support.servers import free_port

from app.config import Settings
from app.events.stomp_publisher import OutboxPublisher

SERVICES = str(Path(__file__).resolve().parents[2] / "scripts" / "services.sh")
OUTAGE_SECONDS = 30.0
REPORTS = 300


class OwnActiveMQ:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="smsgw-mq-")
        self.stomp_port, self.openwire_port = free_port(), free_port()
        self.url = f"stomp://127.0.0.1:{self.stomp_port}"

    async def _services(self, command: str) -> None:
        env = {**os.environ, "SMSGW_SERVICES_DIR": self.dir, "SMSGW_MQ_STOMP_PORT": str(self.stomp_port),
               "SMSGW_MQ_OPENWIRE_PORT": str(self.openwire_port)}
        await asyncio.to_thread(subprocess.run, [SERVICES, command], env=env, check=True, stdout=subprocess.DEVNULL)

    async def start(self) -> None:
        await self._services("mq-start")

    async def stop(self) -> None:
        await self._services("mq-stop")


@pytest.fixture(scope="module")
async def activemq() -> AsyncIterator[OwnActiveMQ]:
    mq = OwnActiveMQ()
    await mq.start()
    yield mq
    await mq.stop()
    shutil.rmtree(mq.dir, ignore_errors=True)


async def test_a_30s_broker_outage_costs_at_most_5_connect_attempts_and_two_log_lines(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], activemq: OwnActiveMQ,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smsgw.outbox")
    queue = f"outage-{os.getpid()}-{free_port()}"
    pub = OutboxPublisher(module_sessions, Settings(database_url=module_db_url, broker_url=activemq.url,
                                                    outbox_batch=50), "outage-test")
    task = asyncio.create_task(pub.run())
    try:
        await write_reports(module_sessions, queue, 10)
        pub.notify()
        await wait_published(module_sessions, queue, 20)

        caplog.clear()
        attempts_before = pub.connect_attempts
        # The outage: the broker is gone (its stop has returned), then OUTAGE_SECONDS of reports. Reports
        # written while it is still stopping could be published before it goes, and would not count.
        await activemq.stop()
        started = time.monotonic()
        for n in range(1, REPORTS + 1):  # a receipt commit every 100 ms, each waking the publisher
            await write_reports(module_sessions, queue, 1)
            pub.notify()
            await asyncio.sleep(max(0.0, started + n * OUTAGE_SECONDS / REPORTS - time.monotonic()))
        attempts = pub.connect_attempts - attempts_before
        during = [r.getMessage() for r in caplog.records if r.name == "smsgw.outbox"]
        assert await unpublished(module_sessions, queue) == REPORTS

        await activemq.start()
        await wait_published(module_sessions, queue, 30)
    finally:
        await pub.stop()
        await asyncio.wait([task], timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "smsgw.outbox"]
    print(f"{attempts} connect attempts in {OUTAGE_SECONDS:.0f}s; log lines: {lines}")
    assert 1 <= attempts <= 5, f"{attempts} connect attempts during a {OUTAGE_SECONDS:.0f}s outage"
    assert len(during) == 1 and "unreachable" in during[0], during
    assert len(lines) <= 5, lines
    back = [line for line in lines if "back after" in line]
    assert len(back) == 1 and f"the {REPORTS} reports held" in back[0], lines
