"""A bind writes every PDU queued in one turn of the event loop in one write, and only to the session
they were queued on (a new session must never get the old one's answers); a submit_sm unanswered for
`response_timeout` ends as an unknown outcome and drops the bind, watched by one timer per bind."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from app.config import SmppProviderConfig
from app.providers.base import UnknownOutcomeError
from app.providers.smpp.bind import Bind
from app.providers.smpp.pdu import CommandId, Pdu, decode_pdu, encode_pdu, split_frames


class Owner:
    config = SmppProviderConfig(name="p", system_id="x", password="y")
    name = "p"

    def note_error(self, text: str) -> None: ...
    def receiver_taken(self, bind: Bind) -> None: ...
    def answered(self, message_id: str) -> None: ...
    async def on_delivers(self, pdus: list[Pdu]) -> list[int]: return [0] * len(pdus)


class Transport:
    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.aborts = 0

    def abort(self) -> None:
        self.aborts += 1
        self.writer.closed = True


class Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.transport = Transport(self)

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


def _sent(writer: Writer) -> list[Pdu]:
    frames, _ = split_frames(bytearray(b"".join(writer.writes)))
    return [decode_pdu(f) for f in frames]


async def test_an_unanswered_submit_drops_the_bind_once_its_time_is_up_and_answered_ones_do_not() -> None:
    writer = Writer()
    bind = _bind(writer)
    bind.cfg = bind.cfg.model_copy(update={"response_timeout": 0.2})
    bind.bound = True
    answered = asyncio.create_task(bind.submit({"short_message": b"a"}, {}))
    silent = [asyncio.create_task(bind.submit({"short_message": b"b"}, {})) for _ in range(3)]
    await asyncio.sleep(0.05)
    first = _sent(writer)[0]
    assert len(_sent(writer)) == 4 and bind._watch is not None  # one timer for the four
    bind._dispatch(encode_pdu(Pdu(CommandId.SUBMIT_SM_RESP, 0, first.sequence_number, {"message_id": "m1"})))
    assert (await answered).command_status == 0
    assert writer.transport.aborts == 0
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in silent) and writer.transport.aborts == 0  # not yet
    for task in silent:
        with pytest.raises(UnknownOutcomeError) as caught:
            await asyncio.wait_for(task, 1.0)
        assert caught.value.code == "TIMEOUT"
    assert writer.transport.aborts == 1 and not bind.bound
    assert bind._due == {} and bind._watch is None


async def test_a_lost_session_stops_its_watch() -> None:
    writer = Writer()
    bind = _bind(writer)
    bind.bound = True
    task = asyncio.create_task(bind.submit({"short_message": b"a"}, {}))
    await asyncio.sleep(0)
    assert bind._watch is not None
    bind._fail_pending(UnknownOutcomeError("CONNECTION_LOST", "bind dropped before the answer"))
    with pytest.raises(UnknownOutcomeError):
        await task
    assert bind._watch is None and bind._due == {}
