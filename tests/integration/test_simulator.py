"""The bundled SMSC simulator over real TCP on 127.0.0.1: a raw client built on app.providers.smpp.pdu, and
aiosmpplib as a real ESME."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiosmpplib import ESME, AbstractHook, DeliverSm, PhoneNumber, SmppMessage, SubmitSm, SubmitSmResp
from aiosmpplib.broker import SimpleBroker
from aiosmpplib.state import SmppSessionState

from app.providers.smpp.pdu import (
    HEADER,
    CommandId,
    Pdu,
    PduError,
    Status,
    Tag,
    UnknownCommandError,
    build_udh,
    concat_info,
    cstr_value,
    decode_pdu,
    encode_body,
    encode_raw,
    int_value,
    split_frames,
)
from app.simulator import SimulatorConfig, SmscSimulator, SubmitRule

SYSTEM_ID, PASSWORD = "smppclient1", "password"
ROOT = Path(__file__).resolve().parents[2]


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class RawClient:
    """Minimal ESME on asyncio streams + the simulator's own codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seq = 0

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, command_id: int, fields: dict[str, Any] | None = None, tlvs: dict[int, bytes] | None = None,
             seq: int | None = None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.writer.write(encode_raw(command_id, seq, encode_body(command_id, fields or {}, tlvs)))
        return seq

    async def read(self, wait: float = 5.0) -> Pdu:
        async with asyncio.timeout(wait):
            header = await self.reader.readexactly(16)
            length = HEADER.unpack_from(header)[0]
            return decode_pdu(header + await self.reader.readexactly(length - 16))

    async def bind(self, mode: int = CommandId.BIND_TRANSCEIVER, system_id: str = SYSTEM_ID,
                   password: str = PASSWORD) -> Pdu:
        self.send(mode, {"system_id": system_id, "password": password, "interface_version": 0x34})
        return await self.read()

    def submit(self, dest: str = "79001234567", text: bytes = b"hello", registered: int = 1, **extra: Any) -> int:
        fields = {"source_addr": "SENDER", "source_addr_ton": 5, "destination_addr": dest, "dest_addr_ton": 1,
                  "dest_addr_npi": 1, "registered_delivery": registered, "short_message": text}
        tlvs = extra.pop("tlvs", None)
        fields.update(extra)
        return self.send(CommandId.SUBMIT_SM, fields, tlvs)

    def ack(self, pdu: Pdu, status: int = 0) -> None:
        self.writer.write(encode_raw(CommandId.DELIVER_SM_RESP, pdu.sequence_number, b"\x00", status))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[SmscSimulator]]]:
    sims: list[SmscSimulator] = []

    async def factory(**overrides: Any) -> SmscSimulator:
        overrides.setdefault("receipt_delay", 0.0)
        sim = SmscSimulator(SimulatorConfig(**overrides))
        await sim.start()
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[[int], Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def factory(port: int) -> RawClient:
        client = await RawClient.connect(port)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


# ---------------------------------------------------------------- codec


def test_codec_roundtrip_and_errors() -> None:
    submit = Pdu(CommandId.SUBMIT_SM, 0, 7, {"source_addr": "A", "destination_addr": "79001234567", "esm_class": 0x40,
                                             "data_coding": 8, "short_message": build_udh(300, 3, 2) + b"\x04\x1f"},
                 {Tag.MESSAGE_STATE: b"\x02", 0x2003: b"25001\x00"})
    decoded = decode_pdu(submit.encode())
    assert decoded.sequence_number == 7 and decoded.tlvs == submit.tlvs
    assert decoded.str_field("destination_addr") == "79001234567" and decoded.int_field("data_coding") == 8
    assert decoded.str_field("service_type") == "" and decoded.int_field("registered_delivery") == 0
    info = concat_info(decoded.int_field("esm_class"), decoded.bytes_field("short_message"), decoded.tlvs)
    assert info is not None and (info.reference, info.total, info.sequence, info.via) == (300, 3, 2, "udh")
    bind = Pdu(CommandId.BIND_RECEIVER, 0, 1, {"system_id": "id", "password": "pw", "interface_version": 0x34})
    assert decode_pdu(bind.encode()).fields["interface_version"] == 0x34
    error_resp = Pdu(CommandId.SUBMIT_SM_RESP, Status.ESME_RTHROTTLED, 9)
    assert len(error_resp.encode()) == 16 and decode_pdu(error_resp.encode()).fields == {}
    with pytest.raises(PduError) as missing_nul:
        decode_pdu(encode_raw(CommandId.SUBMIT_SM, 3, b"abc"))
    assert missing_nul.value.sequence_number == 3
    with pytest.raises(PduError) as bad_tlv:
        decode_pdu(encode_raw(CommandId.ENQUIRE_LINK_RESP, 4, b"\x00\x1e\x00\x09ab"))
    assert bad_tlv.value.status == Status.ESME_RINVOPTPARSTREAM
    with pytest.raises(UnknownCommandError):
        decode_pdu(encode_raw(CommandId.REPLACE_SM, 5))
    stream = bytearray(submit.encode() + bind.encode()[:20])
    frames, error = split_frames(stream)
    assert len(frames) == 1 and error is None and len(stream) == 20
    assert split_frames(bytearray(HEADER.pack(8, 0, 0, 6)))[1] is not None


# ---------------------------------------------------------------- raw-socket tests


async def test_bind_ok_bad_password_unknown_system_id(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim()
    ok = await (await client_factory(sim.port)).bind()
    assert ok.command_id == CommandId.BIND_TRANSCEIVER_RESP and ok.command_status == 0
    assert ok.str_field("system_id") == "SMSCSIM"
    bad = await (await client_factory(sim.port)).bind(CommandId.BIND_TRANSMITTER, password="wrong")
    assert (bad.command_id, bad.command_status) == (CommandId.BIND_TRANSMITTER_RESP, Status.ESME_RINVPASWD)
    unknown = await (await client_factory(sim.port)).bind(CommandId.BIND_RECEIVER, system_id="nobody")
    assert (unknown.command_id, unknown.command_status) == (CommandId.BIND_RECEIVER_RESP, Status.ESME_RINVSYSID)
    assert (sim.stats.binds, sim.stats.bind_failures) == (1, 2)


async def test_submit_response_receipt_and_tlvs(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(vendor_tlvs=True, id_start=0x1A2B)
    client = await client_factory(sim.port)
    await client.bind()
    seq = client.submit(text=b"Hello from the simulator test", tlvs={0x1400: b"x"})
    resp = await client.read()
    assert (resp.command_id, resp.sequence_number, resp.command_status) == (CommandId.SUBMIT_SM_RESP, seq, 0)
    assert resp.str_field("message_id") == "1a2b"
    dlr = await client.read()
    client.ack(dlr)
    assert dlr.command_id == CommandId.DELIVER_SM and dlr.int_field("esm_class") == 0x04
    assert (dlr.str_field("source_addr"), dlr.str_field("destination_addr")) == ("79001234567", "SENDER")
    assert (dlr.int_field("source_addr_ton"), dlr.int_field("dest_addr_ton")) == (1, 5)
    text = dlr.bytes_field("short_message").decode()
    assert text.startswith("id:1a2b sub:001 dlvrd:001 submit date:")
    assert " stat:DELIVRD err:000 text:Hello from the simul" in text and text.endswith("simul")
    assert cstr_value(dlr.tlvs[Tag.RECEIPTED_MESSAGE_ID]) == "1a2b"
    assert dlr.tlvs[Tag.MESSAGE_STATE] == b"\x02"
    assert dlr.tlvs[Tag.NETWORK_ERROR_CODE] == b"\x03\x00\x00"
    assert cstr_value(dlr.tlvs[Tag.VENDOR_COST]) == " 0.0500"
    assert int_value(dlr.tlvs[Tag.VENDOR_FLAGS]) == 0 and len(dlr.tlvs[Tag.VENDOR_FLAGS]) == 2
    assert int_value(dlr.tlvs[Tag.VENDOR_PARTS]) == 1
    assert cstr_value(dlr.tlvs[Tag.VENDOR_MCCMNC]) == "25001"
    assert int_value(dlr.tlvs[Tag.VENDOR_ADDITIONAL_STATUS]) == 0
    await eventually(lambda: sim.stats.deliver_sm_resp == 1)
    record = sim.received[-1]
    assert (record.source, record.destination, record.text, record.message_id) == (
        "SENDER", "79001234567", "Hello from the simulator test", "1a2b")
    assert record.tlvs == {0x1400: b"x"} and sim.messages["1a2b"] is record
    assert sim.submit_count_by_dest[("79001234567", "Hello from the simulator test")] == 1


async def test_hex_response_id_decimal_receipt_id(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(id_start=0x1A2B, receipt_id_format="decimal")
    client = await client_factory(sim.port)
    await client.bind()
    client.submit()
    assert (await client.read()).str_field("message_id") == "1a2b"
    dlr = await client.read()
    assert dlr.bytes_field("short_message").startswith(b"id:6699 ")
    assert cstr_value(dlr.tlvs[Tag.RECEIPTED_MESSAGE_ID]) == "6699"
    sim.configure(id_format="decimal", receipt_id_format="hex")
    client.submit()
    assert (await client.read()).str_field("message_id") == "6700"
    assert cstr_value((await client.read()).tlvs[Tag.RECEIPTED_MESSAGE_ID]) == "1a2c"


async def test_receive_side_rules_intermediate_data_sm_query_sm_and_id_restart(
        make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(id_start=100, id_format="decimal", receipt_delay=0.0, intermediate_notifications=True,
                         receipts_as_data_sm=True)
    client = await client_factory(sim.port)
    await client.bind()
    client.submit()
    assert (await client.read()).str_field("message_id") == "100"
    note, dlr = await client.read(), await client.read()
    assert (note.command_id, note.int_field("esm_class")) == (CommandId.DELIVER_SM, 0x20)
    assert b"stat:ENROUTE" in note.bytes_field("short_message")
    assert (dlr.command_id, dlr.int_field("esm_class")) == (CommandId.DATA_SM, 0x04)
    assert b"stat:DELIVRD" in dlr.tlvs[Tag.MESSAGE_PAYLOAD] and cstr_value(dlr.tlvs[Tag.RECEIPTED_MESSAGE_ID]) == "100"
    client.ack(note)
    client.writer.write(encode_raw(CommandId.DATA_SM_RESP, dlr.sequence_number, b"\x00"))
    await eventually(lambda: sim.stats.deliver_sm_resp == 2)

    sim.configure(intermediate_notifications=False, drop_receipts=True, receipt_delay=30.0)
    client.submit(dest="79001230001")  # UNDELIV by the default rules; its receipt is never sent
    assert (await client.read()).str_field("message_id") == "101"
    client.send(CommandId.QUERY_SM, {"message_id": "101", "source_addr": "SENDER", "source_addr_ton": 5})
    pending = await client.read()
    assert (pending.command_id, pending.int_field("message_state"), pending.str_field("final_date")) == (
        CommandId.QUERY_SM_RESP, 1, "")  # ENROUTE until its receipt time
    sim.configure(receipt_delay=0.0)
    client.send(CommandId.QUERY_SM, {"message_id": "101", "source_addr": "SENDER", "source_addr_ton": 5})
    final = await client.read()
    assert (final.int_field("message_state"), final.int_field("error_code"), len(final.str_field("final_date"))) == (
        5, 1, 16)
    client.send(CommandId.QUERY_SM, {"message_id": "999", "source_addr": "SENDER"})
    assert (await client.read()).command_status == Status.ESME_RQUERYFAIL

    sim.restart_ids(100)
    client.submit()
    assert (await client.read()).str_field("message_id") == "100"  # the counter started again
    assert sim.stats.query_sm == 3 and sim.stats.receipts_sent == 2  # the notification and one receipt


async def test_uuid_ids(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(id_format="uuid")
    client = await client_factory(sim.port)
    await client.bind()
    client.submit()
    message_id = (await client.read()).str_field("message_id")
    assert len(message_id) == 36 and message_id.count("-") == 4
    assert cstr_value((await client.read()).tlvs[Tag.RECEIPTED_MESSAGE_ID]) == message_id


async def test_receipt_before_response(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(receipt_before_response=True, receipt_delay=0.02)
    client = await client_factory(sim.port)
    await client.bind()
    client.submit()
    first, second = await client.read(), await client.read()
    assert first.command_id == CommandId.DELIVER_SM and second.command_id == CommandId.SUBMIT_SM_RESP
    assert cstr_value(first.tlvs[Tag.RECEIPTED_MESSAGE_ID]) == second.str_field("message_id")


async def test_dest_rules_force_outcomes_and_rejections(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim()
    client = await client_factory(sim.port)
    await client.bind()
    client.submit(dest="79000000001")
    assert (await client.read()).command_status == 0
    dlr = await client.read()
    assert b"stat:UNDELIV err:001" in dlr.bytes_field("short_message")
    assert dlr.tlvs[Tag.MESSAGE_STATE] == b"\x05" and dlr.tlvs[Tag.NETWORK_ERROR_CODE] == b"\x03\x00\x01"
    assert b" dlvrd:000 " in dlr.bytes_field("short_message")
    client.submit(dest="79000009999")
    resp = await client.read()
    assert resp.command_status == Status.ESME_RINVDSTADR and resp.fields == {}
    assert sim.received[-1].message_id is None and sim.received[-1].status == Status.ESME_RINVDSTADR


async def test_outcome_mix_and_duplicate_receipts(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(outcomes={"EXPIRED": 1.0}, duplicate_receipts=True)
    client = await client_factory(sim.port)
    await client.bind()
    client.submit(text=b"same")
    client.submit(text=b"same")
    pdus = [await client.read() for _ in range(6)]
    receipts = [p for p in pdus if p.command_id == CommandId.DELIVER_SM]
    assert len(receipts) == 4 and all(b"stat:EXPIRED" in p.bytes_field("short_message") for p in receipts)
    assert all(p.tlvs[Tag.MESSAGE_STATE] == b"\x03" for p in receipts)
    assert sim.submit_count_by_dest[("79001234567", "same")] == 2


async def test_throttling_queue_full_and_reject_rate(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(throttle_rate=5)
    client = await client_factory(sim.port)
    await client.bind()
    for _ in range(20):
        client.submit(registered=0)
    statuses = [(await client.read()).command_status for _ in range(20)]
    assert statuses.count(0) in (5, 6) and statuses.count(Status.ESME_RTHROTTLED) in (14, 15)

    sim.configure(throttle_rate=0, queue_full_every=3)
    for _ in range(6):
        client.submit(registered=0)
    statuses = [(await client.read()).command_status for _ in range(6)]
    assert statuses.count(Status.ESME_RMSGQFUL) == 2

    sim.configure(queue_full_every=0, reject_rate=1.0)
    client.submit(registered=0)
    resp = await client.read()
    assert resp.command_status == Status.ESME_RSUBMITFAIL
    assert sim.stats.submit_sm_resp[Status.ESME_RSUBMITFAIL] == 1


async def test_submit_requires_transmitter_bind(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim()
    client = await client_factory(sim.port)
    client.submit()
    assert (await client.read()).command_status == Status.ESME_RINVBNDSTS
    await client.bind(CommandId.BIND_RECEIVER)
    client.submit()
    assert (await client.read()).command_status == Status.ESME_RINVBNDSTS


async def test_receipts_queue_for_receiver_and_redeliver_unacked(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim()
    tx = await client_factory(sim.port)
    await tx.bind(CommandId.BIND_TRANSMITTER)
    tx.submit()
    message_id = (await tx.read()).str_field("message_id")
    await eventually(lambda: sim.pending_count() == 1)

    rx1 = await client_factory(sim.port)
    await rx1.bind(CommandId.BIND_RECEIVER)
    dlr = await rx1.read()
    assert cstr_value(dlr.tlvs[Tag.RECEIPTED_MESSAGE_ID]) == message_id
    await rx1.close()  # without deliver_sm_resp: the receipt must come again
    await eventually(lambda: sim.pending_count() == 1)

    rx2 = await client_factory(sim.port)
    await rx2.bind(CommandId.BIND_RECEIVER)
    again = await rx2.read()
    assert cstr_value(again.tlvs[Tag.RECEIPTED_MESSAGE_ID]) == message_id
    rx2.ack(again)
    await eventually(lambda: sim.stats.deliver_sm_resp == 1)
    assert sim.stats.redeliveries == 1 and sim.unacked_count() == 0


async def test_second_receiving_bind_of_a_system_id_is_refused(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim()
    trx = await client_factory(sim.port)
    assert (await trx.bind(CommandId.BIND_TRANSCEIVER)).command_status == Status.ESME_ROK
    for mode in (CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER):
        other = await client_factory(sim.port)
        assert (await other.bind(mode)).command_status == Status.ESME_RBINDFAIL
    for _ in range(3):  # transmitters as many as wanted
        tx = await client_factory(sim.port)
        assert (await tx.bind(CommandId.BIND_TRANSMITTER)).command_status == Status.ESME_ROK
    await trx.close()
    await eventually(lambda: not any(s.can_receive for s in sim.sessions))
    rx = await client_factory(sim.port)
    assert (await rx.bind(CommandId.BIND_RECEIVER)).command_status == Status.ESME_ROK  # the first one left


async def test_submit_rules_answer_a_given_part_once(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(submit_rules=[SubmitRule(Status.ESME_RTHROTTLED, suffix="77", part=2)])
    client = await client_factory(sim.port)
    await client.bind()
    statuses = []
    for seq in (1, 2, 2, 3):
        client.submit(dest="79001234577", registered=0, esm_class=0x40, text=build_udh(9, 3, seq) + b"part")
        statuses.append((await client.read()).command_status)
    assert statuses == [0, Status.ESME_RTHROTTLED, 0, 0]


async def test_receipts_round_robin_over_receivers(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(single_receiver=False)
    rx = [await client_factory(sim.port) for _ in range(2)]
    for client in rx:
        await client.bind(CommandId.BIND_RECEIVER)
    tx = await client_factory(sim.port)
    await tx.bind(CommandId.BIND_TRANSMITTER)
    for _ in range(4):
        tx.submit()
    for client in rx:
        for _ in range(2):
            client.ack(await client.read())
    await eventually(lambda: sim.stats.deliver_sm_resp == 4)


async def test_error_deliver_sm_resp_is_retried(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(deliver_retry_delay=0.01, deliver_max_attempts=2)
    client = await client_factory(sim.port)
    await client.bind()
    client.submit()
    await client.read()
    first = await client.read()
    client.ack(first, Status.ESME_RX_T_APPN)
    second = await client.read()
    assert second.bytes_field("short_message") == first.bytes_field("short_message")
    client.ack(second, Status.ESME_RX_T_APPN)
    await eventually(lambda: sim.stats.deliver_sm_failed == 1)
    assert sim.stats.deliver_sm_errors == 2


async def test_long_message_single_id(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(long_message_single_id=True, vendor_tlvs=True)
    client = await client_factory(sim.port)
    await client.bind()
    client.submit(text=build_udh(7, 2, 1) + b"A" * 153, esm_class=0x40)
    client.submit(text=build_udh(7, 2, 2) + b"B" * 10, esm_class=0x40)
    first, second = await client.read(), await client.read()
    assert first.str_field("message_id") == second.str_field("message_id")
    dlr = await client.read()
    assert dlr.command_id == CommandId.DELIVER_SM and int_value(dlr.tlvs[Tag.VENDOR_PARTS]) == 2
    assert cstr_value(dlr.tlvs[Tag.VENDOR_COST]) == " 0.1000"
    sar = {Tag.SAR_MSG_REF_NUM: b"\x01\x00", Tag.SAR_TOTAL_SEGMENTS: b"\x02"}
    client.submit(text=b"part one", tlvs={**sar, Tag.SAR_SEGMENT_SEQNUM: b"\x01"})
    client.submit(text=b"part two", tlvs={**sar, Tag.SAR_SEGMENT_SEQNUM: b"\x02"})
    ids = {(await client.read()).str_field("message_id") for _ in range(2)}
    assert len(ids) == 1 and first.str_field("message_id") not in ids
    dlr = await client.read()
    assert b"text:part onepart two" in dlr.bytes_field("short_message")
    assert sim.received[-1].concat is not None and sim.received[-1].concat.via == "sar"

    sim.configure(long_message_single_id=False)
    client.submit(text=build_udh(8, 2, 1) + b"A", esm_class=0x40)
    client.submit(text=build_udh(8, 2, 2) + b"B", esm_class=0x40)
    pdus = [await client.read() for _ in range(4)]
    assert len({p.str_field("message_id") for p in pdus if p.command_id == CommandId.SUBMIT_SM_RESP}) == 2


async def test_mo_raw_udh_and_sar(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim()
    client = await client_factory(sim.port)
    await client.bind(CommandId.BIND_RECEIVER)
    text = "Привет! " * 30  # 240 UCS-2 chars -> 4 parts of 67
    assert await sim.inject_mo("79001234567", "1234", text, data_coding=8, concat="udh") == 4
    parts = [await client.read() for _ in range(4)]
    for part in parts:
        client.ack(part)
    infos = [concat_info(p.int_field("esm_class"), p.bytes_field("short_message"), p.tlvs) for p in parts]
    assert [i.sequence for i in infos if i] == [1, 2, 3, 4] and all(p.int_field("esm_class") == 0x40 for p in parts)
    assert "".join(p.bytes_field("short_message")[6:].decode("utf-16-be") for p in parts) == text
    assert await sim.inject_mo("79001234567", "1234", "x" * 200, concat="sar") == 2
    sar = [await client.read() for _ in range(2)]
    assert sar[0].int_field("esm_class") == 0 and int_value(sar[1].tlvs[Tag.SAR_SEGMENT_SEQNUM]) == 2
    assert await sim.inject_mo("79001234567", "1234", "hi", data_coding=3) == 1
    single = await client.read()
    assert single.bytes_field("short_message") == b"hi" and single.int_field("data_coding") == 3
    assert sim.stats.mo_sent == 7


async def test_drop_all_closes_connections(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(single_receiver=False)  # several receiving binds of one system_id
    clients = [await client_factory(sim.port) for _ in range(3)]
    for client in clients:
        await client.bind()
    assert await sim.drop_all() == 3
    for client in clients:
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            await client.read(wait=2)
    assert not sim.sessions and sim.stats.drops == 3


async def test_stop_and_restart_on_same_port_redelivers_unacked(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(single_receiver=False)  # several receiving binds of one system_id
    port = sim.port
    receivers = [await client_factory(port) for _ in range(3)]
    for client in receivers:
        await client.bind(CommandId.BIND_RECEIVER)
    tx = await client_factory(port)
    await tx.bind(CommandId.BIND_TRANSMITTER)
    for _ in range(6):
        tx.submit()
    for client in receivers:  # read but never acknowledge
        assert [(await client.read()).command_id for _ in range(2)] == [CommandId.DELIVER_SM] * 2
    await sim.stop()
    assert not sim.sessions and sim.pending_count() == 6
    with pytest.raises(OSError):
        await RawClient.connect(port)
    await sim.start()
    assert sim.port == port
    client = await client_factory(port)
    assert (await client.bind(CommandId.BIND_RECEIVER)).command_status == 0
    for _ in range(6):
        client.ack(await client.read())
    await eventually(lambda: sim.stats.deliver_sm_resp == 6)
    assert sim.stats.redeliveries == 6


async def test_drop_after_response_delay_and_no_response(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(drop_after=3)
    client = await client_factory(sim.port)
    await client.bind()
    for _ in range(3):
        client.submit(registered=0)
    assert [(await client.read()).command_status for _ in range(2)] == [0, 0]
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.read(wait=2)
    client = await client_factory(sim.port)  # "once": the next connection is fine
    await client.bind()
    client.submit(registered=0)
    assert (await client.read()).command_status == 0

    sim.configure(response_delay=0.2, no_response_every=2)
    started = time.monotonic()
    client.submit(registered=0)  # 5th submit_sm overall: answered late
    client.submit(registered=0)  # 6th: never answered
    resp = await client.read()
    assert time.monotonic() - started >= 0.19 and resp.command_status == 0
    with pytest.raises(TimeoutError):
        await client.read(wait=0.4)
    assert sim.stats.no_response == 1


async def test_malformed_pdus_get_generic_nack(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim()
    client = await client_factory(sim.port)
    client.writer.write(encode_raw(0x00000077, 41))  # unknown command id: nack, stay open
    nack = await client.read()
    assert (nack.command_id, nack.command_status, nack.sequence_number) == (
        CommandId.GENERIC_NACK, Status.ESME_RINVCMDID, 41)
    client.writer.write(encode_raw(CommandId.ENQUIRE_LINK, 42))
    assert (await client.read()).command_id == CommandId.ENQUIRE_LINK_RESP
    client.writer.write(HEADER.pack(8, CommandId.ENQUIRE_LINK, 0, 43))  # command_length < 16
    nack = await client.read()
    assert (nack.command_id, nack.command_status) == (CommandId.GENERIC_NACK, Status.ESME_RINVCMDLEN)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.read(wait=2)

    client = await client_factory(sim.port)
    client.writer.write(HEADER.pack(70_000, CommandId.SUBMIT_SM, 0, 44))  # > 64 KiB
    assert (await client.read()).command_status == Status.ESME_RINVCMDLEN
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.read(wait=2)

    client = await client_factory(sim.port)
    await client.bind()
    client.writer.write(encode_raw(CommandId.SUBMIT_SM, 45, b"no-nul-terminators"))  # broken body
    nack = await client.read()
    assert (nack.command_id, nack.sequence_number) == (CommandId.GENERIC_NACK, 45)
    client.writer.write(encode_raw(CommandId.UNBIND, 46))
    assert (await client.read()).command_id == CommandId.UNBIND_RESP
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.read(wait=2)


async def test_control_port(make_sim: Any, client_factory: Any) -> None:
    sim = await make_sim(control_port=0)
    client = await client_factory(sim.port)
    await client.bind(CommandId.BIND_RECEIVER)
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.control_port)

    async def command(line: str) -> str:
        writer.write(line.encode() + b"\n")
        return (await reader.readline()).decode().strip()

    assert await command("ping") == "PONG"
    assert await command("mo concat=udh 79001234567 1234 " + "y" * 170) == "OK 2"
    assert [int(p.int_field("esm_class")) for p in [await client.read(), await client.read()]] == [0x40, 0x40]
    assert await command("mo concat=data_sm 79001234567 1234 by data_sm") == "OK 1"
    assert (await client.read()).command_id == CommandId.DATA_SM
    assert await command("restart-ids 5") == "OK" and sim._ids.next()[0] == "5"
    assert await command("set drop_receipts true") == "OK" and sim.config.drop_receipts
    assert await command("set reject_rate 0.25") == "OK" and sim.config.reject_rate == 0.25
    assert await command("outcomes DELIVRD=0.5,UNDELIV=0.5") == "OK"
    assert (await command("set nonsense 1")).startswith("ERR")
    assert (await command("set id_format nope")).startswith("ERR") and sim.config.id_format == "hex"
    stats = await command("stats")
    assert '"mo_sent":3' in stats and '"binds":1' in stats
    assert await command("drop") == "OK 1"
    writer.close()


async def test_throughput_20000_pipelined_submits(make_sim: Any, client_factory: Any) -> None:
    """Not a timed assertion: all responses must arrive; the rate is printed (pytest -s)."""
    sim = await make_sim(track_duplicates=False)
    client = await client_factory(sim.port)
    await client.bind()
    total = 20_000
    body = encode_body(CommandId.SUBMIT_SM, {"source_addr": "SENDER", "destination_addr": "79001234567",
                                             "short_message": b"throughput test message"})
    payload = b"".join(encode_raw(CommandId.SUBMIT_SM, seq, body) for seq in range(100, 100 + total))
    started = time.perf_counter()
    client.writer.write(payload)
    buffer, seen = bytearray(), set[int]()
    async with asyncio.timeout(60):
        while len(seen) < total:
            buffer += await client.reader.read(1 << 16)
            frames, error = split_frames(buffer)
            assert error is None
            for frame in frames:
                _length, command_id, status, seq = HEADER.unpack_from(frame)
                assert (command_id, status) == (CommandId.SUBMIT_SM_RESP, 0)
                seen.add(seq)
    elapsed = time.perf_counter() - started
    print(f"\nsimulator throughput: {total / elapsed:,.0f} submit_sm/s ({total} in {elapsed:.3f}s)")
    assert seen == set(range(100, 100 + total)) and sim.stats.submit_sm == total


# ---------------------------------------------------------------- aiosmpplib as the ESME


class RecordingHook(AbstractHook):  # type: ignore[misc]
    def __init__(self) -> None:
        self.messages: list[tuple[SmppMessage | None, bytes]] = []

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        self.messages.append((smpp_message, pdu))

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        return None

    def of_type(self, kind: type) -> list[tuple[Any, bytes]]:
        return [(m, pdu) for m, pdu in self.messages if isinstance(m, kind)]


@pytest.fixture
async def esme_factory() -> AsyncIterator[Callable[..., Awaitable[tuple[ESME, RecordingHook, SimpleBroker]]]]:
    started: list[tuple[ESME, asyncio.Task[None]]] = []

    async def factory(port: int) -> tuple[ESME, RecordingHook, SimpleBroker]:
        hook, broker = RecordingHook(), SimpleBroker()
        esme = ESME("127.0.0.1", port, SYSTEM_ID, PASSWORD, hook=hook, broker=broker, log_level="WARNING",
                    enquire_link_interval=30.0, socket_timeout=5.0)
        task = asyncio.create_task(esme.start())
        started.append((esme, task))
        await eventually(lambda: esme.session_state == SmppSessionState.BOUND_TRX)
        return esme, hook, broker

    yield factory
    for esme, task in started:
        await asyncio.wait_for(esme.stop(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_aiosmpplib_submit_and_receipt(make_sim: Any, esme_factory: Any) -> None:
    sim = await make_sim(receipt_delay=0.01, vendor_tlvs=True)
    _esme, hook, broker = await esme_factory(sim.port)
    await broker.enqueue(SubmitSm(short_message="Hello aiosmpplib", source=PhoneNumber("SENDER"),
                                  destination=PhoneNumber("79001234567"), log_id="log-1"))
    await eventually(lambda: bool(hook.of_type(DeliverSm)))
    (resp, _), = hook.of_type(SubmitSmResp)
    (receipt, raw), = hook.of_type(DeliverSm)
    assert resp.message_id == sim.received[-1].message_id and resp.log_id == "log-1"
    assert receipt.is_receipt() and receipt.log_id == "log-1"  # correlated through the id in the text
    parsed = receipt.parse_receipt()
    assert (parsed["id"], parsed["stat"], parsed["err"], parsed["text"]) == (resp.message_id, "DELIVRD", 0,
                                                                           "Hello aiosmpplib")
    assert cstr_value(decode_pdu(raw).tlvs[Tag.RECEIPTED_MESSAGE_ID]) == resp.message_id
    await eventually(lambda: sim.stats.deliver_sm_resp == 1)


async def test_aiosmpplib_mo_single_and_udh_concatenated(make_sim: Any, esme_factory: Any) -> None:
    sim = await make_sim()
    _esme, hook, _broker = await esme_factory(sim.port)
    await sim.inject_mo("79001234567", "1234", "short MO")
    long_text = "Long MO message that needs concatenation. " * 5  # 210 chars -> 2 GSM parts
    assert await sim.inject_mo("79001234568", "1234", long_text, concat="udh") == 2
    await eventually(lambda: sim.stats.deliver_sm_resp == 3)
    messages = [m for m, _ in hook.of_type(DeliverSm)]
    assert [(m.source.number, m.short_message) for m in messages] == [
        ("79001234567", "short MO"), ("79001234568", long_text)]
    assert not any(m.is_receipt() for m in messages)


# ---------------------------------------------------------------- CLI


async def test_cli_runs_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.simulator", "--port", "0", "--log-level", "WARNING",  # uvloop if installed
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("SMSC simulator listening on 127.0.0.1:")
        client = await RawClient.connect(int(line.split(":")[-1]))
        assert (await client.bind()).command_status == 0
        proc.send_signal(signal.SIGTERM)
        unbind = await client.read()
        assert unbind.command_id == CommandId.UNBIND
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await client.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
