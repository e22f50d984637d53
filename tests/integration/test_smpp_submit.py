"""The submit side of the ESME on the wire, against the bundled simulator over TCP: long messages
refused part-way, temporary submit errors, rebinding on ESME_RINVBNDSTS, and the bind layout."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.gateway import smpp_gateway, wait_status

from app.db.tables import MessagePart
from app.providers.smpp.pdu import CommandId, Status, encode_body, encode_raw
from app.simulator import SmscSimulator, SubmitRecord, SubmitRule

LONG_GSM = "".join(f"word{i:03d} " for i in range(45))  # 405 septets: 3 parts of 153


# No numbers with built-in outcomes: each test says what the SMSC does with its destination.
pytestmark = pytest.mark.simulator(dest_rules={}, reject_dest_rules={})


def new_number() -> str:
    return "+4477" + "".join(secrets.choice("23456789") for _ in range(8))


def parts_on_wire(sim: SmscSimulator, to: str) -> list[SubmitRecord]:
    return [r for r in sim.received if r.destination == to.lstrip("+")]


async def part_rows(sessions: async_sessionmaker[AsyncSession], sid: str) -> list[tuple[int, str, str | None, str | None]]:
    async with sessions() as s:
        rows = (await s.execute(select(MessagePart.part_no, MessagePart.status, MessagePart.upstream_id,
                                       MessagePart.provider_status_code)
                                .where(MessagePart.message_sid == sid).order_by(MessagePart.part_no))).all()
    return [(int(r[0]), str(r[1]), r[2], r[3]) for r in rows]


@pytest.mark.parametrize("mode", ["split", "split_sar"])
async def test_throttled_part_resumes_with_the_same_reference_and_the_smsc_gets_each_part_once(
        module_db_url: str, sim: SmscSimulator, mode: str) -> None:
    to = new_number()
    sim.configure(submit_rules=[SubmitRule(Status.ESME_RTHROTTLED, suffix=to[-8:], part=2)])
    async with smpp_gateway(module_db_url, sim.port) as client:
        r = await client.post("/msg-client/send", json={"To": to, "Body": LONG_GSM, "LongMessageMode": mode})
        assert r.json()["Segments"] == 3
        m = await wait_status(client, r.json()["MessageSid"], {"delivered", "failed"})
    assert m["Status"] == "delivered"
    wire = parts_on_wire(sim, to)
    assert [(rec.concat.sequence if rec.concat else 0, rec.status) for rec in wire] == [
        (1, 0), (2, Status.ESME_RTHROTTLED), (2, 0), (3, 0)]  # part 1 was not sent again, nor was anything twice
    assert len({rec.concat.reference for rec in wire if rec.concat}) == 1  # one reference: one message on the handset
    accepted = [rec.message_id for rec in wire if rec.status == 0]
    assert m["UpstreamIds"] == accepted
    retry = [h for h in m["History"] if h["Status"] == "queued" and h.get("ProviderStatusCode") == "0x00000058"]
    assert retry and "1 of 3 parts accepted" in retry[0]["Detail"]


async def test_part_refused_for_good_fails_the_message_and_keeps_each_parts_outcome(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], sim: SmscSimulator) -> None:
    to = new_number()
    sim.configure(submit_rules=[SubmitRule(Status.ESME_RSUBMITFAIL, suffix=to[-8:], part=2, times=0)])
    async with smpp_gateway(module_db_url, sim.port) as client:
        r = await client.post("/msg-client/send", json={"To": to, "Body": LONG_GSM})
        m = await wait_status(client, r.json()["MessageSid"], {"failed"})
        await asyncio.sleep(0.3)  # the receipt for part 1 arrives meanwhile
        status_after = (await client.get(f"/msg-client/messages/{m['MessageSid']}")).json()["Status"]
    assert (m["Status"], m["ProviderStatusCode"], status_after) == ("failed", "0x00000045", "failed")
    wire = parts_on_wire(sim, to)
    assert [(rec.concat.sequence if rec.concat else 0) for rec in wire] == [1, 2]
    for _ in range(100):  # part 1's receipt (the simulator sends one per part) still finds its row
        rows = await part_rows(module_sessions, m["MessageSid"])
        if rows[0][1] == "delivered":
            break
        await asyncio.sleep(0.05)
    assert [(n, status, code) for n, status, _, code in rows] == [
        (1, "delivered", "DELIVRD"), (2, "failed", "0x00000045"), (3, "canceled", None)]
    assert rows[0][2] == wire[0].message_id


async def test_long_message_resumes_after_the_bind_drops_between_parts(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession], sim: SmscSimulator) -> None:
    to = new_number()
    # Part 2 is never answered: the response timeout drops the bind, part 2 is an unknown outcome.
    sim.configure(submit_rules=[SubmitRule(suffix=to[-8:], part=2, answer=False)])
    async with smpp_gateway(module_db_url, sim.port, response_timeout=1.0) as client:
        r = await client.post("/msg-client/send", json={"To": to, "Body": LONG_GSM})
        m = await wait_status(client, r.json()["MessageSid"], {"delivered", "failed"}, timeout=30)
    assert m["Status"] == "delivered"
    wire = parts_on_wire(sim, to)
    # The unanswered part 2 is not in `received`: each part was accepted once, part 1 never sent again.
    assert Counter(rec.concat.sequence for rec in wire if rec.concat) == {1: 1, 2: 1, 3: 1}
    assert len({rec.concat.reference for rec in wire if rec.concat}) == 1
    assert m["UpstreamIds"] == [rec.message_id for rec in wire]


@pytest.mark.parametrize(("status", "extra"), [
    (Status.ESME_RSYSERR, []), (Status.ESME_RMSGQFUL, []), (Status.ESME_RTHROTTLED, []),
    (Status.ESME_RX_T_APPN, []), (Status.ESME_RSUBMITFAIL, ["0x45"]),
])
async def test_temporary_submit_errors_are_retried_and_delivered(module_db_url: str, sim: SmscSimulator,
                                                                 status: int, extra: list[str]) -> None:
    to = new_number()
    sim.configure(submit_rules=[SubmitRule(status, suffix=to[-8:], times=2)])
    async with smpp_gateway(module_db_url, sim.port, temporary_errors=extra) as client:
        r = await client.post("/msg-client/send", json={"To": to, "Body": "temporary"})
        m = await wait_status(client, r.json()["MessageSid"], {"delivered", "failed"})
    assert m["Status"] == "delivered"
    assert [rec.status for rec in parts_on_wire(sim, to)] == [status, status, 0]


async def test_permanent_submit_error_is_not_retried(module_db_url: str, sim: SmscSimulator) -> None:
    to = new_number()
    sim.configure(submit_rules=[SubmitRule(Status.ESME_RSUBMITFAIL, suffix=to[-8:], times=0)])
    async with smpp_gateway(module_db_url, sim.port) as client:
        r = await client.post("/msg-client/send", json={"To": to, "Body": "refused"})
        m = await wait_status(client, r.json()["MessageSid"], {"delivered", "failed"})
    assert (m["Status"], m["ProviderStatusCode"]) == ("failed", "0x00000045")
    assert len(parts_on_wire(sim, to)) == 1


async def test_invalid_bind_status_rebinds_and_delivers(module_db_url: str, sim: SmscSimulator) -> None:
    to = new_number()
    sim.configure(submit_rules=[SubmitRule(Status.ESME_RINVBNDSTS, suffix=to[-8:])])
    async with smpp_gateway(module_db_url, sim.port) as client:
        binds = sim.stats.binds
        r = await client.post("/msg-client/send", json={"To": to, "Body": "rebind"})
        m = await wait_status(client, r.json()["MessageSid"], {"delivered", "failed"})
    assert m["Status"] == "delivered"
    assert sim.stats.binds == binds + 1  # the SMSC said we were not bound: the bind was made again
    assert [rec.status for rec in parts_on_wire(sim, to)] == [Status.ESME_RINVBNDSTS, 0]


@pytest.mark.parametrize(("bind", "layout"), [
    ("transceiver", {"transceiver": 1, "transmitter": 2}),
    ("transmitter_receiver", {"transmitter": 3, "receiver": 1}),
])
async def test_bind_layout_has_one_receiving_bind(module_db_url: str, sim: SmscSimulator, bind: str,
                                                  layout: dict[str, int]) -> None:
    async with smpp_gateway(module_db_url, sim.port, bind=bind, sessions=3) as client:
        for _ in range(100):
            if Counter(s.mode for s in sim.sessions if s.mode) == layout:
                break
            await asyncio.sleep(0.05)
        assert Counter(s.mode for s in sim.sessions if s.mode) == layout
        sids = [(await client.post("/msg-client/send", json={"To": new_number(), "Body": f"layout {i}"})
                 ).json()["MessageSid"] for i in range(6)]
        states = [(await wait_status(client, sid, {"delivered"}))["Status"] for sid in sids]
        providers = (await client.get("/msg-client/providers")).json()
    assert states == ["delivered"] * 6  # receipts all came through the one receiving bind
    assert sim.stats.bind_failures == 0  # and the simulator, which refuses a second one, never had to
    assert [p["sessions_total"] for p in providers["Providers"]] == [sum(layout.values())]


async def test_transceiver_refused_by_a_taken_receiver_sends_as_transmitter_and_takes_over_later(
        module_db_url: str, sim: SmscSimulator) -> None:
    # Another replica holds the account's one receiving bind.
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(encode_raw(CommandId.BIND_TRANSCEIVER, 1, encode_body(
        CommandId.BIND_TRANSCEIVER, {"system_id": "smppclient1", "password": "password", "interface_version": 0x34})))
    await reader.readexactly(16)
    async with smpp_gateway(module_db_url, sim.port, bind="transceiver", sessions=1) as client:
        r = await client.post("/msg-client/send", json={"To": new_number(), "Body": "while another receives"})
        m = await wait_status(client, r.json()["MessageSid"], {"sent", "delivered"})
        assert m["Status"] in ("sent", "delivered")  # sent through a transmitter bind
        assert sorted(s.mode or "" for s in sim.sessions) == ["transceiver", "transmitter"]
        writer.close()  # the other replica goes: our receiver binds (its backoff is short at first)
        for _ in range(200):
            if sorted(s.mode or "" for s in sim.sessions) == ["receiver", "transmitter"]:
                break
            await asyncio.sleep(0.05)
        assert sorted(s.mode or "" for s in sim.sessions) == ["receiver", "transmitter"]
        r = await client.post("/msg-client/send", json={"To": new_number(), "Body": "now we receive"})
        assert (await wait_status(client, r.json()["MessageSid"], {"delivered"}))["Status"] == "delivered"
