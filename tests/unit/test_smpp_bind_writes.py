"""A bind writes every PDU queued in one turn of the event loop in one write, and only to the session
they were queued on (a new session must never get the old one's answers)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from app.config import SmppProviderConfig
from app.providers.smpp.bind import Bind
from app.providers.smpp.pdu import CommandId, Pdu, encode_pdu


class Owner:
    config = SmppProviderConfig(name="p", system_id="x", password="y")
    name = "p"

    def note_error(self, text: str) -> None: ...
    def receiver_taken(self, bind: Bind) -> None: ...
    def answered(self, message_id: str) -> None: ...
    async def on_deliver(self, pdu: Pdu) -> None: ...


class Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _bind(writer: Writer) -> Bind:
    bind = Bind(cast(Any, Owner()), "trx", 0)
    bind._writer = cast(asyncio.StreamWriter, writer)
    return bind


def _link(seq: int) -> Pdu:
    return Pdu(CommandId.ENQUIRE_LINK_RESP, 0, seq)


async def test_pdus_queued_in_one_turn_go_out_in_one_write_in_order() -> None:
    writer = Writer()
    bind = _bind(writer)
    for seq in (1, 2, 3):
        bind._write(_link(seq))
    assert writer.writes == []  # not yet: at the end of this turn
    await asyncio.sleep(0)
    assert writer.writes == [encode_pdu(_link(1)) + encode_pdu(_link(2)) + encode_pdu(_link(3))]
    bind._write(_link(4))
    await asyncio.sleep(0)
    assert writer.writes[1:] == [encode_pdu(_link(4))]


async def test_what_was_queued_for_a_session_never_reaches_the_next() -> None:
    old, new = Writer(), Writer()
    bind = _bind(old)
    bind._write(_link(7))
    bind._writer = cast(asyncio.StreamWriter, new)  # the session was replaced before the write
    await asyncio.sleep(0)
    assert old.writes == [] and new.writes == []


async def test_closing_a_session_writes_what_is_queued_first() -> None:
    writer = Writer()
    bind = _bind(writer)
    bind._write(Pdu(CommandId.UNBIND_RESP, 0, 9))
    bind._close(cast(asyncio.StreamWriter, writer))
    assert writer.writes == [encode_pdu(Pdu(CommandId.UNBIND_RESP, 0, 9))] and writer.closed
    await asyncio.sleep(0)
    assert len(writer.writes) == 1  # the flush already scheduled finds nothing left
