"""What a message costs in rows (issue #15, the row diet), end to end over SMPP against the simulator:
its history entries for `sent` and its final status come from its own row, a one-part message keeps
its upstream id on its own row (no message_part row), and GET still answers the whole History."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.gateway import smpp_gateway, wait_status

from app.db.tables import MessagePart, StatusEvent
from app.domain.dispatching import Claimed
from app.providers.smpp.pdu import Status as SmppStatus
from app.services import dispatching
from app.simulator import SmscSimulator, SubmitRule

pytestmark = pytest.mark.simulator(dest_rules={}, reject_dest_rules={})  # every number delivers


async def _rows(sessions: async_sessionmaker[AsyncSession], sid: str) -> tuple[int, list[tuple[str, str | None]]]:
    async with sessions() as s:
        events = int(await s.scalar(select(func.count()).select_from(StatusEvent)
                                    .where(StatusEvent.message_sid == sid)) or 0)
        parts = [(str(r[0]), r[1]) for r in (await s.execute(
            select(MessagePart.status, MessagePart.upstream_id).where(MessagePart.message_sid == sid))).all()]
    return events, parts


async def test_a_delivered_message_has_its_whole_history_and_writes_no_history_row(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], sim: SmscSimulator) -> None:
    to = "+4477" + "".join(secrets.choice("23456789") for _ in range(8))
    async with smpp_gateway(module_db_url, sim.port) as client:
        r = await client.post("/msg-client/send", json={"To": to, "Body": "one part"})
        sid = r.json()["MessageSid"]
        m = await wait_status(client, sid, {"delivered", "failed"})
    assert [(h["Status"], h["Source"], h["Applied"]) for h in m["History"]] == [
        ("queued", "api", True), ("sent", "provider:smsc-main", True), ("delivered", "smpp:smsc-main", True)]
    assert m["History"][2]["ProviderStatusCode"] == "DELIVRD" == m["ProviderStatusCode"]
    assert m["History"][0]["At"] <= m["History"][1]["At"] <= m["History"][2]["At"]
    events, parts = await _rows(module_sessions, sid)
    assert events == 0  # both entries are the message row's own
    assert parts == [] and len(m["UpstreamIds"]) == 1  # its one upstream id is on the message row itself


async def test_a_message_failed_by_the_smsc_says_why_in_its_history(module_db_url: str, sim: SmscSimulator) -> None:
    to = "+4477" + "".join(secrets.choice("23456789") for _ in range(8))
    sim.configure(submit_rules=[SubmitRule(SmppStatus.ESME_RSUBMITFAIL, suffix=to[-8:], times=0)])
    async with smpp_gateway(module_db_url, sim.port) as client:
        r = await client.post("/msg-client/send", json={"To": to, "Body": "refused"})
        m = await wait_status(client, r.json()["MessageSid"], {"delivered", "failed"})
    last = m["History"][-1]
    assert [h["Status"] for h in m["History"]] == ["queued", "failed"]
    assert (last["Source"], last["ProviderStatusCode"]) == ("provider:smsc-main", "0x00000045")
    assert last["Detail"]  # the SMSC's refusal, as the dispatcher recorded it


@pytest.fixture
def claimed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sids the dispatcher claims from the database (not handed over by /send), as it claims them."""
    sids: list[str] = []
    claim = dispatching.claim

    async def recording_claim(*args: Any, **kwargs: Any) -> list[Claimed]:
        got = await claim(*args, **kwargs)
        sids.extend(c.sid for c in got)
        return got

    monkeypatch.setattr(dispatching, "claim", recording_claim)
    return sids


async def test_a_message_accepted_here_goes_to_this_dispatcher_without_a_claim(
        module_db_url: str, sim: SmscSimulator, claimed: list[str]) -> None:
    to = "+4477" + "".join(secrets.choice("23456789") for _ in range(8))
    async with smpp_gateway(module_db_url, sim.port) as client:
        sids = [(await client.post("/msg-client/send", json={"To": to, "Body": f"m{i}"})).json()["MessageSid"]
                for i in range(5)]
        done = [await wait_status(client, sid, {"delivered", "failed"}) for sid in sids]
    assert [m["Status"] for m in done] == ["delivered"] * 5
    assert not set(sids) & set(claimed)  # inserted already claimed by this process's dispatcher


async def test_a_scheduled_message_is_claimed_when_due(module_db_url: str, sim: SmscSimulator,
                                                       claimed: list[str]) -> None:
    to = "+4477" + "".join(secrets.choice("23456789") for _ in range(8))
    send_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    async with smpp_gateway(module_db_url, sim.port) as client:
        sid = (await client.post("/msg-client/send", json={"To": to, "Body": "later", "SendAt": send_at})).json()[
            "MessageSid"]
        m = await wait_status(client, sid, {"delivered", "failed"}, timeout=20)
    assert m["Status"] == "delivered" and sid in claimed
