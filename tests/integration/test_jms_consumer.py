"""What a JMS application sees (ActiveMQ's own OpenWire client, in Java, from the Debian package): each
report arrives as a persistent TextMessage whose JMSType is the channel, with the dedupe property and
the contract's body; inbound SMS the same on their queue."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
from conftest import STOMP_URL
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tables import OutboxEvent
from app.domain.status import Status
from app.events.stomp_publisher import OutboxPublisher
from app.services import outbox_rows as outbox

HERE = Path(__file__).resolve().parent
JARS = ["activemq-client.jar", "geronimo-jms_1.1_spec.jar", "geronimo-j2ee-management-1.1-spec.jar", "hawtbuf.jar",
        "slf4j-api.jar"]
OPENWIRE = os.environ.get("SMSGW_TEST_OPENWIRE_URL", "tcp://127.0.0.1:61616")


def classpath() -> str:
    """ActiveMQ's client jars, where Debian's `activemq` package (which `make test` installs) puts them."""
    found = []
    for jar in JARS:
        for folder in ("/usr/share/java", "/usr/share/activemq/lib"):
            if (Path(folder) / jar).exists():
                found.append(str(Path(folder) / jar))
                break
        else:
            raise AssertionError(f"{jar} not found: is Debian's activemq package installed?")
    return ":".join(found)


def jms_peek(tmp: Path, queue: str, count: int) -> list[dict[str, Any]]:
    cp = classpath()
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac and java, "a JDK is needed (ActiveMQ's package brings the runtime; javac comes with the JDK)"
    subprocess.run([javac, "-cp", cp, "-d", str(tmp), str(HERE.parent / "jms" / "JmsPeek.java")], check=True)
    out = subprocess.run([java, "-cp", f"{cp}:{tmp}", "JmsPeek", OPENWIRE, queue, str(count)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_reports_and_inbound_reach_jms_as_typed_text_messages(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    suffix = secrets.token_hex(4)
    reports, inbound = f"delivery-report-{suffix}", f"inbound-sms-{suffix}"
    sid = "SM" + secrets.token_hex(16)
    rows = [
        outbox.report_event(queue=reports, message_sid=sid, status=Status.DELIVERED, provider_status_code="DELIVRD",
                            channel="smpp", to="+96170123456", provider="smsc-main", error_code=None),
        outbox.report_event(queue=reports, message_sid=sid + "f", status=Status.FAILED, provider_status_code="1706",
                            channel="http", to="+96170123457", provider="commpeak", error_code="1706"),
        outbox.inbound_event(queue=inbound, inbound={"Sid": "MM" + secrets.token_hex(16), "From": "+96170999888",
                                                     "To": "+96170000001", "Body": "مرحبا STOP"}),
    ]
    async with module_sessions() as s:
        await s.execute(insert(OutboxEvent), rows)
        await s.commit()
    pub = OutboxPublisher(module_sessions, Settings(database_url=module_db_url, broker_url=STOMP_URL), "jms")
    task = asyncio.create_task(pub.run())
    try:
        for _ in range(100):
            if pub.published >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await pub.stop()
        await asyncio.wait([task], timeout=10)
    got = await asyncio.to_thread(jms_peek, tmp_path, reports, 2)
    assert [m["jms_type"] for m in got] == ["smpp", "http"]
    assert all(m["class"] == "TextMessage" and m["persistent"] for m in got)
    assert all(m["content_type"] == "application/json" for m in got)
    bodies = [orjson.loads(m["body"]) for m in got]
    assert [(b["MessageSID"], b["DeliveryStatus"], b["ProviderStatusCode"]) for b in bodies] == \
        [(sid, "DELIVERED", "DELIVRD"), (sid + "f", "FAILED", "1706")]
    assert [m["report_id"] for m in got] == [f"report:{sid}", f"report:{sid}f"]
    (mo,) = await asyncio.to_thread(jms_peek, tmp_path, inbound, 1)
    assert mo["class"] == "TextMessage" and mo["jms_type"] == "inbound"
    assert orjson.loads(mo["body"])["Body"] == "مرحبا STOP"
