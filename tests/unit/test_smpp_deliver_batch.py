"""The deliver_sm of one read are stored together: one wait on the sink for all their receipts, MO
messages each on its own; every PDU is answered, after its content is stored, with ESME_ROK or, for
the one that could not be stored, ESME_RSYSERR (the SMSC redelivers it)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from app.config import SmppProviderConfig
from app.domain.status import Status
from app.providers.base import InboundSms, Receipt, SinkClosed
from app.providers.smpp.bind import Bind
from app.providers.smpp.pdu import CommandId, Pdu, decode_pdu, encode_pdu, split_frames
from app.providers.smpp.provider import SmppProvider

RECEIPT, MO = 0x04, 0x00  # esm_class message types


def deliver(seq: int, esm_class: int, text: str) -> Pdu:
    return Pdu(CommandId.DELIVER_SM, 0, seq, {"source_addr": "4477000001", "destination_addr": "Acme",
                                               "esm_class": esm_class, "data_coding": 0,
                                               "short_message": text.encode()})


def receipt(seq: int, upstream: str, stat: str = "DELIVRD") -> Pdu:
    return deliver(seq, RECEIPT, f"id:{upstream} sub:001 dlvrd:001 submit date:2612011200 "
                                 f"done date:2612011201 stat:{stat} err:000 text:")


class Sink:
    """Keeps what it is given; a call holding an upstream id in `bad` fails (like a row that cannot be
    written), and so does every call while `closed`."""

    def __init__(self, bad: set[str] | None = None, closed: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.kept: list[Receipt] = []
        self.inbound_kept: list[InboundSms] = []
        self.bad = bad or set()
        self.closed = closed

    async def receipts(self, receipts: Sequence[Receipt]) -> None:
        self.calls.append([r.upstream_id for r in receipts])
        await asyncio.sleep(0)
        if self.closed:
            raise SinkClosed("shutting down")
        if self.bad & {r.upstream_id for r in receipts}:
            raise RuntimeError("cannot store")
        self.kept.extend(receipts)

    async def inbound(self, message: InboundSms) -> None:
        await asyncio.sleep(0)
        if self.closed:
            raise SinkClosed("shutting down")
        if message.body in self.bad:
            raise RuntimeError("cannot store")
        self.inbound_kept.append(message)


def provider(sink: Sink) -> SmppProvider:
    p = SmppProvider(SmppProviderConfig(name="smsc", system_id="x", password="y"))
    p.sink = sink
    return p


async def test_the_receipts_of_one_read_are_stored_in_one_call_and_each_answered_ok() -> None:
    sink = Sink()
    statuses = await provider(sink).on_delivers([receipt(1, "a1"), receipt(2, "b2", "UNDELIV"), receipt(3, "c3")])
    assert statuses == [0, 0, 0]
    assert sink.calls == [["a1", "b2", "c3"]]
    assert [(r.upstream_id, r.status) for r in sink.kept] == [
        ("a1", Status.DELIVERED), ("b2", Status.UNDELIVERED), ("c3", Status.DELIVERED)]


async def test_a_receipt_that_cannot_be_stored_is_refused_alone() -> None:
    sink = Sink(bad={"b2"})
    statuses = await provider(sink).on_delivers([receipt(1, "a1"), receipt(2, "b2"), receipt(3, "c3")])
    assert statuses == [0, 0x08, 0]  # ESME_RSYSERR for the one the SMSC must redeliver
    assert sink.calls == [["a1", "b2", "c3"], ["a1"], ["b2"], ["c3"]]
    assert [r.upstream_id for r in sink.kept] == ["a1", "c3"]


async def test_during_shutdown_every_receipt_of_the_read_is_refused_at_once() -> None:
    sink = Sink(closed=True)
    statuses = await provider(sink).on_delivers([receipt(1, "a1"), receipt(2, "b2")])
    assert statuses == [0x08, 0x08]
    assert sink.calls == [["a1", "b2"]]  # not retried one by one: nothing can be stored


async def test_mo_messages_are_stored_one_by_one_beside_the_receipts() -> None:
    sink = Sink(bad={"second"})
    statuses = await provider(sink).on_delivers(
        [deliver(1, MO, "first"), receipt(2, "a1"), deliver(3, MO, "second"), deliver(4, 0x18, "abort")])
    assert statuses == [0, 0, 0x08, 0]  # the conversation abort is acknowledged, not stored
    assert [m.body for m in sink.inbound_kept] == ["first"]
    assert sink.calls == [["a1"]]


class Owner:
    config = SmppProviderConfig(name="p", system_id="x", password="y")
    name = "p"

    def __init__(self) -> None:
        self.delivered: list[list[int]] = []
        self.release = asyncio.Event()

    def note_error(self, text: str) -> None: ...
    def receiver_taken(self, bind: Bind) -> None: ...
    def answered(self, message_id: str) -> None: ...

    async def on_delivers(self, pdus: list[Pdu]) -> list[int]:
        self.delivered.append([p.sequence_number for p in pdus])
        await self.release.wait()
        return [0x08 if p.sequence_number == 2 else 0 for p in pdus]


class Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


class Reader:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def read(self, _n: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        await asyncio.Event().wait()  # the SMSC stays silent
        return b""


async def test_a_bind_hands_over_the_deliver_sm_of_one_read_together_and_answers_each_once_stored() -> None:
    owner, writer = Owner(), Writer()
    bind = Bind(cast(Any, owner), "trx", 0)
    bind._writer = cast(asyncio.StreamWriter, writer)
    first = b"".join(encode_pdu(receipt(seq, f"u{seq}")) for seq in (1, 2, 3))
    reading = asyncio.create_task(bind._read_loop(cast(asyncio.StreamReader, Reader(first, encode_pdu(receipt(4, "u4"))))))
    await asyncio.sleep(0.05)
    assert owner.delivered == [[1, 2, 3], [4]]  # one hand-over per read; the second does not wait for the first
    assert writer.writes == []  # nothing is answered before it is stored
    owner.release.set()
    await asyncio.sleep(0.05)
    frames, _ = split_frames(bytearray(b"".join(writer.writes)))
    answers = [decode_pdu(f) for f in frames]
    assert [(a.command_id, a.sequence_number, a.command_status) for a in answers] == [
        (CommandId.DELIVER_SM_RESP, 1, 0), (CommandId.DELIVER_SM_RESP, 2, 0x08), (CommandId.DELIVER_SM_RESP, 3, 0),
        (CommandId.DELIVER_SM_RESP, 4, 0)]
    reading.cancel()


class BrokenOwner(Owner):
    async def on_delivers(self, pdus: list[Pdu]) -> list[int]:
        raise RuntimeError("a bug in the owner")


async def test_an_owner_that_fails_outright_has_every_deliver_sm_of_the_read_refused() -> None:
    writer = Writer()
    bind = Bind(cast(Any, BrokenOwner()), "trx", 0)
    bind._writer = cast(asyncio.StreamWriter, writer)
    chunk = b"".join(encode_pdu(receipt(seq, f"u{seq}")) for seq in (7, 8))
    reading = asyncio.create_task(bind._read_loop(cast(asyncio.StreamReader, Reader(chunk))))
    await asyncio.sleep(0.05)
    frames, _ = split_frames(bytearray(b"".join(writer.writes)))
    assert [(a.sequence_number, a.command_status) for a in map(decode_pdu, frames)] == [(7, 0x08), (8, 0x08)]
    reading.cancel()
