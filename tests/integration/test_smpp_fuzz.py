"""SMPP from a misbehaving SMSC (issue #7): a hostile SMSC on real TCP against the production ESME.

`HostileSmsc` (an asyncio server on 127.0.0.1) answers the bind correctly, plays a script that
breaks the protocol, then serves normally. What we expect, as Jasmin and Kannel behave:

- a PDU that cannot be framed (command_length < 16 or absurd, a frame that never completes) resets
  the session: the ESME hangs up and rebinds after a backoff;
- a framed request it cannot read (unknown command_id, a body that does not decode) is answered
  generic_nack with its sequence number and the session goes on; a response is never answered;
- a submit cut off by the fault is either answered or raised as UnknownOutcomeError (on which the
  dispatcher resubmits SMPP messages); once the bind is back new submits succeed;
- a receipt is acknowledged only once the ReportSink has it, and only on the session it came on;
- the bind task and the event loop survive all of it (no task dies, the loop reports no error).
"""

from __future__ import annotations

import asyncio
import gc
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import api_settings
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import SmppProviderConfig
from app.db.tables import KeptReceipt
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import UpstreamId, new_message_sid
from app.metrics import Metrics
from app.providers.base import InboundSms, OutboundMessage, Receipt, SubmitResult, UnknownOutcomeError
from app.providers.smpp.pdu import (
    HEADER,
    HEADER_LENGTH,
    MAX_PDU_LENGTH,
    RESPONSE_BIT,
    CommandId,
    Pdu,
    PduError,
    Status,
    Tag,
    build_udh,
    decode_pdu,
    encode_body,
    encode_pdu,
    encode_raw,
    response_for,
    split_frames,
    tlv_cstr,
    tlv_int,
)
from app.providers.smpp.provider import SmppProvider
from app.services.sink import DbReportSink

BINDS = {CommandId.BIND_TRANSCEIVER, CommandId.BIND_TRANSMITTER, CommandId.BIND_RECEIVER}
MIN_BACKOFF = 0.08  # the ESME waits 0.2 s × [0.5, 1.5) before rebinding; a little slack for timers


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def wire(pdu: Pdu) -> tuple[int, int, int]:
    return pdu.command_id, pdu.command_status, pdu.sequence_number


# ---------------------------------------------------------------- the hostile SMSC


class Session:
    """One ESME connection as the SMSC sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.index = -1
        self.bind: Pdu | None = None
        self.received: list[Pdu] = []  # every PDU the ESME sent on this connection, the bind included
        self.bound_at = 0.0
        self.ended_at: float | None = None
        self.hung_up_by_esme = False
        self.script_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.notes: dict[str, Any] = {}  # what a script saw, for the test to assert on

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_pdu(self, command_id: int, sequence_number: int, fields: dict[str, Any] | None = None,
                 tlvs: dict[int, bytes] | None = None, status: int = 0) -> None:
        self.send(encode_pdu(Pdu(command_id, status, sequence_number, fields or {}, tlvs or {})))

    def answer_submit(self, submit: Pdu) -> None:
        self.send_pdu(CommandId.SUBMIT_SM_RESP, submit.sequence_number,
                      {"message_id": "id-" + submit.str_field("destination_addr")})

    def close(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        self.writer.close()

    async def read(self, wait: float | None = 3.0) -> Pdu | None:
        """The ESME's next PDU; None once it hung up. TimeoutError if nothing came within `wait`."""
        try:
            async with asyncio.timeout(wait):
                header = await self.reader.readexactly(HEADER_LENGTH)
                body = await self.reader.readexactly(HEADER.unpack_from(header)[0] - HEADER_LENGTH)
        except (asyncio.IncompleteReadError, ConnectionError):
            if self.ended_at is None:
                self.ended_at = time.monotonic()
                self.hung_up_by_esme = True
            return None
        pdu = decode_pdu(header + body)
        self.received.append(pdu)
        return pdu

    async def expect(self, command_id: int) -> Pdu:
        pdu = await self.read()
        assert pdu is not None and pdu.command_id == command_id, pdu
        return pdu

    async def until_hangup(self, wait: float = 3.0) -> list[Pdu]:
        """Everything the ESME sends, unanswered, until it hangs up."""
        seen = []
        while (pdu := await self.read(wait)) is not None:
            seen.append(pdu)
        return seen

    async def until(self, command_id: int, sequence_number: int) -> list[Pdu]:
        """PDUs up to and including the one named (the answer to a probe)."""
        seen: list[Pdu] = []
        while True:
            pdu = await self.read()
            assert pdu is not None, f"the ESME hung up; it had sent {[p.name for p in seen]}"
            seen.append(pdu)
            if (pdu.command_id, pdu.sequence_number) == (command_id, sequence_number):
                return seen

    async def serve(self) -> None:
        """A well-behaved SMSC: answers submit_sm, enquire_link and unbind."""
        while (pdu := await self.read(wait=None)) is not None:
            if pdu.command_id == CommandId.SUBMIT_SM:
                self.answer_submit(pdu)
            elif pdu.command_id == CommandId.ENQUIRE_LINK:
                self.send_pdu(CommandId.ENQUIRE_LINK_RESP, pdu.sequence_number)
            elif pdu.command_id == CommandId.UNBIND:
                self.send_pdu(CommandId.UNBIND_RESP, pdu.sequence_number)
                self.close()


Script = Callable[[Session], Awaitable[None]]


class HostileSmsc:
    """Session n plays scripts[n] (or `every`) right after a correct bind_resp, then serves normally."""

    def __init__(self, *scripts: Script, every: Script | None = None) -> None:
        self._scripts = list(scripts)
        self._every = every
        self.sessions: list[Session] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for s in self.sessions:
            s.writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    async def session(self, index: int, within: float = 5.0) -> Session:
        await eventually(lambda: len(self.sessions) > index, within)
        return self.sessions[index]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = Session(reader, writer)
        try:
            bind = await session.read(wait=5.0)
            if bind is None or bind.command_id not in BINDS:
                return
            session.send_pdu(response_for(bind.command_id), bind.sequence_number, {"system_id": "hostile"})
            session.bind, session.bound_at, session.index = bind, time.monotonic(), len(self.sessions)
            self.sessions.append(session)
            script = self._scripts[session.index] if session.index < len(self._scripts) else self._every
            try:
                if script is not None:
                    await script(session)
            except Exception as exc:
                session.script_done.set_exception(exc)
                raise
            session.script_done.set_result(None)
            if session.ended_at is None:
                await session.serve()
        except Exception:
            session.close()  # the test sees the failure through script_done
        finally:
            writer.close()
            self._tasks.discard(task)


# ---------------------------------------------------------------- the ESME side


class RecordingSink:
    """A ReportSink that keeps what it is given; `gate` holds storing, `fail` refuses it."""

    def __init__(self) -> None:
        self.kept: list[Receipt] = []
        self.inbound_kept: list[InboundSms] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = 0  # this many calls raise, like a database that is away
        self.storing = 0

    async def receipts(self, receipts: Sequence[Receipt]) -> None:
        self.storing += 1
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database away")
        self.kept.extend(receipts)

    async def inbound(self, message: InboundSms) -> None:
        self.inbound_kept.append(message)


class Harness:
    def __init__(self) -> None:
        self.providers: list[SmppProvider] = []
        self.servers: list[HostileSmsc] = []

    async def smsc(self, *scripts: Script, every: Script | None = None) -> HostileSmsc:
        server = HostileSmsc(*scripts, every=every)
        await server.start()
        self.servers.append(server)
        return server

    async def esme(self, smsc: HostileSmsc, sink: Any = None, wait_bound: bool = True,
                   **config: Any) -> SmppProvider:
        values: dict[str, Any] = {"name": "hostile", "port": smsc.port, "system_id": "esme", "password": "secret",
                                  "enquire_link_interval": 30.0, "response_timeout": 2.0, **config}
        provider = SmppProvider(SmppProviderConfig(**values))
        await provider.start(sink if sink is not None else RecordingSink())
        self.providers.append(provider)
        if wait_bound:
            await eventually(provider.is_available)
        return provider


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    h = Harness()
    try:
        yield h
        # No fault may end a bind's session loop for good: each still runs, ready to rebind.
        dead = [b.name for p in h.providers for b in p.binds if b._task is None or b._task.done()]
        assert not dead, f"bind tasks died: {dead}"
    finally:
        await asyncio.gather(*(p.stop() for p in h.providers))
        for server in h.servers:
            await server.stop()
        gc.collect()  # surfaces "exception was never retrieved" while our handler listens
        loop.set_exception_handler(previous)
    assert not loop_errors, loop_errors


def message(n: int) -> OutboundMessage:
    return OutboundMessage(sid=new_message_sid(), to=f"+4477009{n:05d}", sender="Acme", body=f"fuzz {n}",
                           encoding=Encoding.GSM7, long_message_mode=LongMessageMode.SPLIT)


def accepted(n: int) -> SubmitResult:
    """What the hostile SMSC answers for message(n) when it behaves."""
    return SubmitResult((UpstreamId(f"id-4477009{n:05d}"),))


async def submit_when_bound(provider: SmppProvider, msg: OutboundMessage) -> SubmitResult:
    await eventually(provider.is_available)
    return await provider.submit(msg)


def receipt_fields(upstream_id: str) -> dict[str, Any]:
    text = f"id:{upstream_id} sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:x"
    return {"esm_class": 0x04, "source_addr": "96170123456", "destination_addr": "Acme",
            "short_message": text.encode()}


def mo_fields(text: bytes = b"hello there", data_coding: int = 0) -> dict[str, Any]:
    return {"source_addr": "96170999888", "destination_addr": "96170000001", "data_coding": data_coding,
            "short_message": text}


# ---------------------------------------------------------------- truncated PDUs


@pytest.mark.parametrize("then", ["close", "stall"])
async def test_truncated_pdu_resets_the_session_and_the_cut_submit_is_reported(harness: Harness, then: str) -> None:
    async def truncate(session: Session) -> None:
        submit = await session.expect(CommandId.SUBMIT_SM)
        answer = encode_pdu(Pdu(CommandId.SUBMIT_SM_RESP, 0, submit.sequence_number, {"message_id": "x" * 23}))
        assert HEADER.unpack_from(answer)[0] == len(answer) == 40
        session.send(answer[:20])  # the header says 40 bytes; 20 arrive
        if then == "close":
            session.close()
        else:  # silence: only the ESME's own link check can find the session dead
            session.notes["stalled"] = await session.until_hangup()

    smsc = await harness.smsc(truncate)
    provider = await harness.esme(smsc, enquire_link_interval=0.2, response_timeout=0.3)
    with pytest.raises(UnknownOutcomeError) as cut:
        await provider.submit(message(1))
    # Either way the caller learns the submit's fate is unknown; the dispatcher resubmits SMPP on that.
    assert cut.value.code == {"close": "CONNECTION_LOST", "stall": "TIMEOUT"}[then]

    first = await smsc.session(0)
    await first.script_done
    if then == "stall":
        assert [p.command_id for p in first.notes["stalled"]] == [CommandId.ENQUIRE_LINK]
        assert first.hung_up_by_esme
    second = await smsc.session(1)
    assert second.bind is not None and second.bind.command_id == CommandId.BIND_TRANSCEIVER
    assert first.ended_at is not None and second.bound_at - first.ended_at >= MIN_BACKOFF
    assert await submit_when_bound(provider, message(2)) == accepted(2)


# ---------------------------------------------------------------- command_length lies


@pytest.mark.parametrize("length", [0, 15, MAX_PDU_LENGTH + 1, 0x7FFFFFFF],
                         ids=["zero", "below-header", "over-max", "0x7FFFFFFF"])
async def test_command_length_out_of_range_resets_the_session(harness: Harness, length: int) -> None:
    async def answer_one_then_break_framing(session: Session) -> None:
        first = await session.expect(CommandId.SUBMIT_SM)
        await session.expect(CommandId.SUBMIT_SM)
        # One write: a good answer for the first submit, then a header nothing can be framed past.
        session.answer_submit(first)
        session.send(HEADER.pack(length, CommandId.DELIVER_SM, 0, 77) + bytes(24))
        session.notes["answered"] = first.str_field("destination_addr")
        session.notes["after"] = await session.until_hangup()

    smsc = await harness.smsc(answer_one_then_break_framing)
    provider = await harness.esme(smsc)
    msgs = [message(1), message(2)]
    results = await asyncio.gather(*(provider.submit(m) for m in msgs), return_exceptions=True)

    first = await smsc.session(0)
    await first.script_done
    by_dest = {m.to.lstrip("+"): r for m, r in zip(msgs, results, strict=True)}
    answered = first.notes["answered"]
    assert by_dest.pop(answered) == SubmitResult((UpstreamId("id-" + answered),))  # framed before the fault
    [cut] = by_dest.values()
    assert isinstance(cut, UnknownOutcomeError) and cut.code == "CONNECTION_LOST"
    assert first.hung_up_by_esme
    # Nothing is owed for an unframeable PDU; at most a generic_nack before hanging up.
    assert all(wire(p)[:2] == (CommandId.GENERIC_NACK, Status.ESME_RINVCMDLEN) for p in first.notes["after"])

    second = await smsc.session(1)
    assert first.ended_at is not None and second.bound_at - first.ended_at >= MIN_BACKOFF
    assert await submit_when_bound(provider, message(3)) == accepted(3)


async def test_command_length_beyond_the_bytes_sent_swallows_the_answer_until_the_link_check(
        harness: Harness) -> None:
    async def overlong_then_carry_on(session: Session) -> None:
        submit = await session.expect(CommandId.SUBMIT_SM)
        session.send(HEADER.pack(HEADER_LENGTH + 200, CommandId.DELIVER_SM, 0, 77) + bytes(20))
        session.answer_submit(submit)  # eaten by the frame above, which waits for 180 more bytes
        # Then the SMSC goes on as if all were well (its enquire_link_resp is eaten too).
        await session.serve()

    smsc = await harness.smsc(overlong_then_carry_on)
    provider = await harness.esme(smsc, enquire_link_interval=0.2, response_timeout=0.3)
    with pytest.raises(UnknownOutcomeError) as cut:
        await provider.submit(message(1))
    assert cut.value.code == "TIMEOUT"  # a swallowed answer is never taken for one

    first = await smsc.session(0)
    second = await smsc.session(1)
    assert first.hung_up_by_esme  # its enquire_link went unanswered (as far as it could tell)
    assert [p.command_id for p in first.received[2:]] == [CommandId.ENQUIRE_LINK]
    assert first.ended_at is not None and second.bound_at - first.ended_at >= MIN_BACKOFF
    assert await submit_when_bound(provider, message(2)) == accepted(2)


async def test_command_length_a_little_too_long_misaligns_the_framing_then_resets(harness: Harness) -> None:
    async def overlong_by_eight(session: Session) -> None:
        submit = await session.expect(CommandId.SUBMIT_SM)
        # The enquire_link claims 8 body bytes it does not have: it takes the answer's first 8 bytes as a
        # (broken) TLV, and the rest of the answer starts with command_status 0 read as command_length.
        session.send(HEADER.pack(HEADER_LENGTH + 8, CommandId.ENQUIRE_LINK, 0, 77))
        session.answer_submit(submit)
        session.notes["after"] = await session.until_hangup()

    smsc = await harness.smsc(overlong_by_eight)
    provider = await harness.esme(smsc)
    with pytest.raises(UnknownOutcomeError) as cut:
        await provider.submit(message(1))
    assert cut.value.code == "CONNECTION_LOST"

    first = await smsc.session(0)
    await first.script_done
    assert [wire(p) for p in first.notes["after"]] == [
        (CommandId.GENERIC_NACK, Status.ESME_RINVOPTPARSTREAM, 77)]  # framed, unreadable: nacked
    assert first.hung_up_by_esme  # then unframeable: reset
    await smsc.session(1)
    assert await submit_when_bound(provider, message(2)) == accepted(2)


# ---------------------------------------------------------------- unknown / unreadable PDUs

_MO_BODY = encode_body(CommandId.DELIVER_SM, mo_fields(b"hello"))


@pytest.mark.parametrize(("command_id", "body", "status"), [
    pytest.param(0x00000099, b"", Status.ESME_RINVCMDID, id="unknown-0x99"),
    pytest.param(0x00000099, b"\x01\x02what\x00\xff", Status.ESME_RINVCMDID, id="unknown-0x99-with-body"),
    pytest.param(CommandId.REPLACE_SM, b"\x00" * 12, Status.ESME_RINVCMDID, id="replace_sm-unsupported"),
    pytest.param(CommandId.DATA_SM, b"\x00" * 5, Status.ESME_RINVCMDLEN, id="data_sm-truncated"),
    pytest.param(CommandId.SUBMIT_SM, encode_body(CommandId.SUBMIT_SM, mo_fields()), Status.ESME_RINVCMDID,
                 id="submit_sm-from-the-smsc"),
    pytest.param(CommandId.DELIVER_SM, b"no terminator", Status.ESME_RINVCMDLEN, id="deliver_sm-no-nul"),
    pytest.param(CommandId.DELIVER_SM, _MO_BODY[:-6] + bytes((50,)) + b"hello", Status.ESME_RINVMSGLEN,
                 id="deliver_sm-short_message-overruns"),
    pytest.param(CommandId.DELIVER_SM, _MO_BODY + b"\x04\x24\x00\x10ab", Status.ESME_RINVOPTPARSTREAM,
                 id="deliver_sm-tlv-overruns"),
])
async def test_unreadable_request_gets_generic_nack_and_the_session_goes_on(
        harness: Harness, command_id: int, body: bytes, status: int) -> None:
    async def send_unreadable(session: Session) -> None:
        session.send(encode_raw(command_id, 4242, body))
        session.send_pdu(CommandId.ENQUIRE_LINK, 4243)  # probe: the session still answers
        session.notes["replies"] = await session.until(CommandId.ENQUIRE_LINK_RESP, 4243)

    smsc = await harness.smsc(send_unreadable)
    provider = await harness.esme(smsc)
    first = await smsc.session(0)
    await first.script_done
    assert [wire(p) for p in first.notes["replies"]] == [
        (CommandId.GENERIC_NACK, status, 4242), (CommandId.ENQUIRE_LINK_RESP, 0, 4243)]
    assert await provider.submit(message(1)) == accepted(1)
    assert len(smsc.sessions) == 1 and not first.hung_up_by_esme  # the same session throughout


@pytest.mark.parametrize(("command_id", "body"), [
    pytest.param(0x80000099, b"\x00", id="unknown-response-id"),
    pytest.param(CommandId.SUBMIT_SM_RESP, b"no terminator", id="submit_sm_resp-undecodable"),
])
async def test_unreadable_response_is_ignored_not_nacked(harness: Harness, command_id: int, body: bytes) -> None:
    async def unreadable_responses(session: Session) -> None:
        session.send(encode_raw(command_id, 4242, body))  # for a sequence number never sent
        session.send_pdu(CommandId.ENQUIRE_LINK, 4243)
        seen = [await session.read(), await session.read()]
        assert sorted(p.name for p in seen if p is not None) == ["enquire_link_resp", "submit_sm"], seen
        submit = next(p for p in seen if p is not None and p.command_id == CommandId.SUBMIT_SM)
        # The same unreadable response with the pending submit's sequence number, then the real answer.
        session.send(encode_raw(command_id, submit.sequence_number, body))
        session.answer_submit(submit)
        session.send_pdu(CommandId.ENQUIRE_LINK, 4244)
        session.notes["after"] = await session.until(CommandId.ENQUIRE_LINK_RESP, 4244)

    smsc = await harness.smsc(unreadable_responses)
    provider = await harness.esme(smsc)
    assert await provider.submit(message(1)) == accepted(1)  # not settled by the unreadable one
    first = await smsc.session(0)
    await first.script_done
    assert [p.name for p in first.notes["after"]] == ["enquire_link_resp"]
    assert not any(p.command_id == CommandId.GENERIC_NACK for p in first.received)  # a response is never answered
    assert len(smsc.sessions) == 1


async def test_unreadable_answer_to_a_pending_submit_is_an_unknown_outcome(harness: Harness) -> None:
    async def garbled_answer(session: Session) -> None:
        submit = await session.expect(CommandId.SUBMIT_SM)
        session.send(encode_raw(CommandId.SUBMIT_SM_RESP, submit.sequence_number, b"no terminator"))

    smsc = await harness.smsc(garbled_answer)
    provider = await harness.esme(smsc, response_timeout=0.3)
    with pytest.raises(UnknownOutcomeError) as cut:
        await provider.submit(message(1))
    assert cut.value.code == "TIMEOUT"  # the SMSC may have it: the dispatcher resubmits
    # A session that left a submit_sm unanswered takes no more of them: it is dropped and bound again.
    await eventually(provider.is_available)
    assert await provider.submit(message(2)) == accepted(2)
    assert len(smsc.sessions) == 2


async def test_submit_sm_resp_for_a_sequence_never_sent_is_ignored(harness: Harness) -> None:
    async def stray_answers(session: Session) -> None:
        session.send_pdu(CommandId.SUBMIT_SM_RESP, 900_001, {"message_id": "ghost-1"})  # before any submit
        first = await session.expect(CommandId.SUBMIT_SM)
        seq = first.sequence_number
        # Strays for the next sequence number (not sent yet) and a far one, then the real answer.
        session.send_pdu(CommandId.SUBMIT_SM_RESP, seq + 1, {"message_id": "ghost-2"})
        session.send_pdu(CommandId.SUBMIT_SM_RESP, seq + 1000, {"message_id": "ghost-3"}, status=0x58)
        session.answer_submit(first)
        second = await session.expect(CommandId.SUBMIT_SM)
        assert second.sequence_number == seq + 1
        session.answer_submit(second)

    smsc = await harness.smsc(stray_answers)
    provider = await harness.esme(smsc)
    assert await provider.submit(message(1)) == accepted(1)
    assert await provider.submit(message(2)) == accepted(2)  # the early stray for its number was not kept
    first = await smsc.session(0)
    await first.script_done
    assert [p.name for p in first.received] == ["bind_transceiver", "submit_sm", "submit_sm"]  # no nack
    assert provider.binds[0].paused_until == 0.0  # the stray ESME_RTHROTTLED did not pause the bind


# ---------------------------------------------------------------- receipts


async def test_receipt_for_an_id_never_submitted_is_kept_pending_before_it_is_acknowledged(
        harness: Harness, sessions: async_sessionmaker[AsyncSession], db_url: str) -> None:
    name = "hostile-" + secrets.token_hex(3)
    raw_id = "0A1B" + secrets.token_hex(4).upper()

    async def stranger_receipt(session: Session) -> None:
        session.send_pdu(CommandId.DELIVER_SM, 4242, receipt_fields(raw_id),
                         {Tag.RECEIPTED_MESSAGE_ID: tlv_cstr(raw_id), Tag.MESSAGE_STATE: tlv_int(2)})
        session.notes["resp"] = await session.read()
        # The deliver_sm_resp has come, so the report must already be committed.
        async with sessions() as s:
            session.notes["kept"] = (await s.scalars(
                select(KeptReceipt).where(KeptReceipt.provider == name))).all()

    sink = DbReportSink(sessions, api_settings(db_url), Metrics())
    sink.start()
    try:
        smsc = await harness.smsc(stranger_receipt)
        provider = await harness.esme(smsc, sink=sink, name=name)
        first = await smsc.session(0)
        await first.script_done
    finally:
        await sink.stop()
    assert wire(first.notes["resp"]) == (CommandId.DELIVER_SM_RESP, 0, 4242)
    [kept] = first.notes["kept"]
    assert (kept.status, kept.provider_status_code, kept.source) == ("delivered", "DELIVRD", f"smpp:{name}")
    assert kept.payload is not None and kept.payload["raw_id"] == raw_id
    assert await provider.submit(message(1)) == accepted(1)


async def test_receipt_that_cannot_be_stored_is_refused_and_taken_on_redelivery(harness: Harness) -> None:
    async def deliver_twice(session: Session) -> None:
        for _ in range(2):  # the SMSC redelivers what was refused
            session.send_pdu(CommandId.DELIVER_SM, 4242, receipt_fields("77"))
            session.notes.setdefault("resps", []).append(await session.read())

    sink = RecordingSink()
    sink.fail = 1
    smsc = await harness.smsc(deliver_twice)
    await harness.esme(smsc, sink=sink)
    first = await smsc.session(0)
    await first.script_done
    assert [wire(p) for p in first.notes["resps"]] == [
        (CommandId.DELIVER_SM_RESP, Status.ESME_RSYSERR, 4242), (CommandId.DELIVER_SM_RESP, 0, 4242)]
    assert [r.upstream_id for r in sink.kept] == ["77"]
    assert len(smsc.sessions) == 1


async def test_receipt_in_flight_when_the_session_resets_is_not_acknowledged_on_the_next_one(
        harness: Harness) -> None:
    sink = RecordingSink()
    sink.gate.clear()  # storing waits until the test lets it go

    async def receipt_then_break(session: Session) -> None:
        session.send_pdu(CommandId.DELIVER_SM, 5, receipt_fields("77"))
        await eventually(lambda: sink.storing == 1)
        session.send(HEADER.pack(0, CommandId.DELIVER_SM, 0, 6))  # cannot be framed: the ESME hangs up
        session.notes["after"] = await session.until_hangup()

    async def next_session(session: Session) -> None:
        sink.gate.set()  # the first session's receipt gets stored now, after the reset
        await eventually(lambda: len(sink.kept) == 1)
        session.send_pdu(CommandId.ENQUIRE_LINK, 9)  # anything the ESME wrote before answering comes first
        session.notes["before_probe"] = await session.until(CommandId.ENQUIRE_LINK_RESP, 9)
        # Unacknowledged, the receipt is redelivered on this session (SMSCs restart their numbering).
        session.send_pdu(CommandId.DELIVER_SM, 5, receipt_fields("77"))
        session.notes["redelivered"] = await session.read()

    smsc = await harness.smsc(receipt_then_break, next_session)
    await harness.esme(smsc, sink=sink)
    first, second = await smsc.session(0), await smsc.session(1)
    await first.script_done
    await second.script_done
    assert first.notes["after"] == []  # not stored yet when the session broke: no answer there
    # A deliver_sm_resp for sequence 5 here would acknowledge whatever this session numbers 5.
    assert [p.name for p in second.notes["before_probe"]] == ["enquire_link_resp"]
    assert wire(second.notes["redelivered"]) == (CommandId.DELIVER_SM_RESP, 0, 5)
    assert [r.upstream_id for r in sink.kept] == ["77", "77"]  # kept twice; the receipt service dedupes


# ---------------------------------------------------------------- seeded garbage

FUZZ_SEED = 20240607
FUZZ_CASES = 300
FUZZ_BINDS = 20
PROBE = 0x7FFFFF00  # sequence numbers of the probes; generated PDUs stay below
KNOWN_IDS = [int(c) for c in CommandId]
TASK_ANSWERS = (CommandId.DELIVER_SM_RESP, CommandId.DATA_SM_RESP)


def _probe(seq: int) -> bytes:
    return encode_pdu(Pdu(CommandId.ENQUIRE_LINK, 0, seq))


def _templates(rng: random.Random) -> list[bytes]:
    seq = rng.randint(1, PROBE - 1)
    receipt_tlvs: dict[int, bytes] = {Tag.RECEIPTED_MESSAGE_ID: tlv_cstr("123"), Tag.MESSAGE_STATE: tlv_int(2)}
    return [
        encode_pdu(Pdu(CommandId.DELIVER_SM, 0, seq, mo_fields(data_coding=rng.choice([0, 3, 8])))),
        encode_pdu(Pdu(CommandId.DELIVER_SM, 0, seq, receipt_fields("123"), receipt_tlvs)),
        encode_pdu(Pdu(CommandId.DELIVER_SM, 0, seq, {**mo_fields(build_udh(7, 2, 1) + b"part"), "esm_class": 0x40})),
        encode_pdu(Pdu(CommandId.ENQUIRE_LINK, 0, seq)),
        encode_pdu(Pdu(CommandId.SUBMIT_SM_RESP, 0, seq, {"message_id": "abc"})),
        encode_pdu(Pdu(CommandId.GENERIC_NACK, Status.ESME_RINVCMDID, seq)),
        encode_pdu(Pdu(CommandId.DELIVER_SM_RESP, 0, seq, {"message_id": ""})),
        encode_raw(CommandId.DATA_SM, seq, rng.randbytes(12)),
        encode_raw(0x00000099, seq),
        encode_pdu(Pdu(CommandId.UNBIND, 0, seq)),
    ]


def _piece(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.2:  # noise
        return rng.randbytes(rng.randint(1, 48))
    if kind < 0.5:  # a plausible header over noise, its length right, short, long or absurd
        body = rng.randbytes(rng.randint(0, 40))
        length = rng.choice([HEADER_LENGTH + len(body)] * 3 + [
            rng.randint(0, HEADER_LENGTH - 1), HEADER_LENGTH + len(body) + rng.randint(1, 8),
            max(HEADER_LENGTH, HEADER_LENGTH + len(body) - rng.randint(1, 8)), 0x7FFFFFFF])
        command_id = rng.choice([*KNOWN_IDS, 0x00000099, 0x80000099, rng.getrandbits(32)])
        return HEADER.pack(length, command_id, rng.choice([0, 0, rng.getrandbits(32)]),
                           rng.randint(1, PROBE - 1)) + body
    data = bytearray(rng.choice(_templates(rng)))
    if kind < 0.6:
        return bytes(data)  # well formed
    how = rng.randrange(4)
    if how == 0:  # flip bytes anywhere
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1 and len(data) > HEADER_LENGTH:  # flip body bytes only: the framing holds
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(HEADER_LENGTH, len(data))] = rng.randrange(256)
    elif how == 2:  # cut the body short, length adjusted
        data = data[:rng.randint(HEADER_LENGTH, len(data))]
        HEADER.pack_into(data, 0, len(data), *HEADER.unpack_from(data)[1:])
    else:  # trailing bytes (a broken TLV stream), length adjusted
        data += rng.randbytes(rng.randint(1, 9))
        HEADER.pack_into(data, 0, len(data), *HEADER.unpack_from(data)[1:])
    return bytes(data)


@dataclass
class Expected:
    alive: bool  # the ESME frames everything, ending exactly on the probe, and was not unbound
    answers: list[tuple[int, int, int]]  # (command_id, status, seq) answered in line, in order
    delivers: list[tuple[int, int]]  # (response command, seq) of deliver_sm / data_sm (answered by a task)


def expected_answers(data: bytes) -> Expected:
    """What SMPP 3.4 asks of an ESME fed `data` and then a probe: every framed request answered
    once (generic_nack when it cannot be read or is not taken), no response ever answered."""
    probe = _probe(PROBE)
    buffer = bytearray(data + probe)
    frames, error = split_frames(buffer)
    alive = error is None and not buffer and frames[-1:] == [probe]
    answers: list[tuple[int, int, int]] = []
    delivers: list[tuple[int, int]] = []
    for raw in frames[:-1] if alive else frames:
        _length, command_id, _status, seq = HEADER.unpack_from(raw)
        if command_id & RESPONSE_BIT:
            continue
        try:
            decode_pdu(raw)
        except PduError as exc:
            answers.append((CommandId.GENERIC_NACK, exc.status, seq))
            continue
        if command_id == CommandId.ENQUIRE_LINK:
            answers.append((CommandId.ENQUIRE_LINK_RESP, 0, seq))
        elif command_id == CommandId.UNBIND:
            answers.append((CommandId.UNBIND_RESP, 0, seq))
            alive = False
            break  # the ESME hangs up: nothing after it is answered
        elif command_id in (CommandId.DELIVER_SM, CommandId.DATA_SM):
            delivers.append((response_for(command_id), seq))
        else:
            answers.append((CommandId.GENERIC_NACK, Status.ESME_RINVCMDID, seq))
    return Expected(alive, answers, delivers)


@dataclass
class FuzzCase:
    index: int
    data: bytes
    expected: Expected
    outcome: str = ""  # "alive" | "reset" | "hung"
    replies: list[Pdu] = field(default_factory=list)


def fuzz_cases(seed: int = FUZZ_SEED, n: int = FUZZ_CASES) -> list[FuzzCase]:
    rng = random.Random(seed)
    cases: list[FuzzCase] = []
    while len(cases) < n:
        data = b"".join(_piece(rng) for _ in range(rng.choice([1, 1, 2, 3])))
        expected = expected_answers(data)
        if any(seq >= PROBE for *_, seq in expected.answers) or any(s >= PROBE for _, s in expected.delivers):
            continue  # a mutation hit a probe's number: the answers could not be told apart
        cases.append(FuzzCase(len(cases), data, expected))
    return cases


async def play(session: Session, case: FuzzCase) -> bool:
    """Send the case and a probe; True if the ESME answered the probe (session alive)."""
    deferred: list[int] = []  # the ESME's own enquire_links, answered only if the stream is in step

    async def collect(probe_seq: int) -> bool:
        while True:
            try:
                pdu = await session.read(wait=2.0)
            except TimeoutError:
                case.outcome = "hung"
                session.close()
                return False
            if pdu is None:
                case.outcome = "reset"
                return False
            if pdu.command_id == CommandId.ENQUIRE_LINK:
                deferred.append(pdu.sequence_number)
            elif (pdu.command_id, pdu.sequence_number) == (CommandId.ENQUIRE_LINK_RESP, probe_seq):
                return True
            else:
                case.replies.append(pdu)

    session.send(case.data + _probe(PROBE))
    if not await collect(PROBE):
        return False
    session.send(_probe(PROBE + 1))  # flushes deliver_sm_resps, which come from their own tasks
    if not await collect(PROBE + 1):
        return False
    for seq in deferred:
        session.send_pdu(CommandId.ENQUIRE_LINK_RESP, seq)
    case.outcome = "alive"
    return True


async def test_seeded_garbage_never_crashes_and_every_session_recovers(harness: Harness) -> None:
    cases = fuzz_cases()
    queue: Iterator[FuzzCase] = iter(cases)

    async def fuzz(session: Session) -> None:
        while (case := next(queue, None)) is not None:
            if not await play(session, case):
                return

    smsc = await harness.smsc(every=fuzz)
    sink = RecordingSink()
    providers = [await harness.esme(smsc, sink=sink, name=f"fuzz-{i}", wait_bound=False,
                                    enquire_link_interval=0.1, response_timeout=0.3) for i in range(FUZZ_BINDS)]
    await eventually(lambda: all(c.outcome for c in cases), within=20.0)

    for case in cases:
        where = f"case {case.index}: {case.data.hex()}"
        want = case.expected
        assert case.outcome == ("alive" if want.alive else "reset"), where
        inline = [wire(p) for p in case.replies if p.command_id not in TASK_ANSWERS]
        assert inline == want.answers, where
        delivered = Counter(wire(p) for p in case.replies if p.command_id in TASK_ANSWERS)
        owed = Counter((resp, 0, seq) for resp, seq in want.delivers)
        # A reset may cut a deliver_sm off before it is answered (the SMSC redelivers it); never more.
        assert delivered == owed if want.alive else delivered <= owed, where

    outcomes = Counter(c.outcome for c in cases)
    nacks = sum(1 for c in cases for a in c.expected.answers if a[0] == CommandId.GENERIC_NACK)
    delivers = sum(len(c.expected.delivers) for c in cases)
    # The generator reaches every path: kept sessions, resets, nacks and deliver_sms.
    assert outcomes["alive"] >= 50 and outcomes["reset"] >= 50, outcomes
    assert nacks >= 50 and delivers >= 20, (nacks, delivers)
    results = await asyncio.gather(*(submit_when_bound(p, message(i)) for i, p in enumerate(providers)))
    assert results == [accepted(i) for i in range(FUZZ_BINDS)]
    assert len(smsc.sessions) == FUZZ_BINDS + outcomes["reset"]  # one fresh bind after each reset
