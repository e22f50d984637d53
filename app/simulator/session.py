"""One ESME connection to the simulator: an asyncio.Protocol that answers PDUs in batches.

Every complete PDU in the read buffer is handled synchronously and all resulting responses go out
with a single transport.write (no per-PDU awaits), which is what makes >10k submit_sm/s possible.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from app.domain.throttle import TokenBucket
from app.providers.smpp.pdu import (
    HEADER,
    HEADER_LENGTH,
    CommandId,
    PduError,
    Status,
    decode_body,
    encode_body,
    encode_raw,
    generic_nack,
    split_frames,
    status_name,
)
from app.simulator.receipts import Outbound

if TYPE_CHECKING:
    from app.simulator.server import SmscSimulator

log = logging.getLogger("app.simulator")

BIND_MODES: dict[int, str] = {
    CommandId.BIND_TRANSMITTER: "transmitter",
    CommandId.BIND_RECEIVER: "receiver",
    CommandId.BIND_TRANSCEIVER: "transceiver",
}
_SUBMIT_SM = int(CommandId.SUBMIT_SM)
_DELIVER_RESPS = frozenset((int(CommandId.DELIVER_SM_RESP), int(CommandId.DATA_SM_RESP)))
_QUERY_SM = int(CommandId.QUERY_SM)
_ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)
_ENQUIRE_LINK_RESP_ID = int(CommandId.ENQUIRE_LINK_RESP)
_IGNORED_RESPONSES = frozenset((int(CommandId.ENQUIRE_LINK_RESP), int(CommandId.UNBIND_RESP)))


class Batch:
    """Output collected while handling the PDUs of one read."""

    __slots__ = ("close", "deferred", "drop", "flush_pending", "out", "receipts")

    def __init__(self) -> None:
        self.out: list[bytes] = []  # written at the end of the batch, in order
        self.deferred: list[bytes] = []  # submit_sm_resp held back (response_delay / receipt_before_response)
        self.receipts: list[Outbound] = []
        self.drop = False  # abort the connection (drop_after)
        self.close = False  # close after writing (unbind, failed bind)
        self.flush_pending = False  # a receiver just bound: deliver queued deliver_sm to it


class SmppSession(asyncio.Protocol):
    def __init__(self, sim: SmscSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.buffer = bytearray()
        self.system_id: str | None = None
        self.mode: str | None = None  # transmitter / receiver / transceiver once bound
        self.unacked: dict[int, Outbound] = {}  # deliver_sm awaiting deliver_sm_resp, by sequence
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq = 0
        self._bucket: TokenBucket | None = None

    # ------------------------------------------------------------ state

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    @property
    def can_submit(self) -> bool:
        return self.mode in ("transmitter", "transceiver")

    @property
    def can_receive(self) -> bool:
        return self.mode in ("receiver", "transceiver")

    def next_sequence(self) -> int:
        self._seq = self._seq + 1 if self._seq < 0x7FFFFFFF else 1
        return self._seq

    def take_token(self, now: float, rate: float) -> bool:
        """throttle_rate's token bucket (one second's worth; a new rate starts a new, full bucket)."""
        if self._bucket is None or self._bucket.rate != rate:
            self._bucket = TokenBucket(rate, now=now)
        return self._bucket.take(now) == 0.0

    def write(self, chunks: list[bytes]) -> None:
        if chunks and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(chunks))

    def send_deliver(self, items: list[Outbound]) -> None:
        """Write deliver_sm PDUs (one write) and track them until deliver_sm_resp."""
        if self.transport is None or self.transport.is_closing():
            self.sim.router.dispatch(items, exclude=self)  # never picks a closing session: no ping-pong
            return
        chunks: list[bytes] = []
        stats = self.sim.stats
        for item in items:
            seq = self.next_sequence()
            item.attempts += 1
            if item.attempts > 1:
                stats.redeliveries += 1
            self.unacked[seq] = item
            chunks.append(HEADER.pack(HEADER_LENGTH + len(item.body), item.command_id, 0, seq))
            chunks.append(item.body)
            if item.kind == "receipt":
                stats.receipts_sent += 1
            else:
                stats.mo_sent += 1
        self.transport.write(b"".join(chunks))

    def send_unbind(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_raw(CommandId.UNBIND, self.next_sequence()))

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.sim.session_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sim.session_closed(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        frames, error = split_frames(buffer)
        batch = Batch()
        now = asyncio.get_running_loop().time() if self.sim.config.throttle_rate > 0 else 0.0
        for frame in frames:
            self._handle(frame, batch, now)
            if batch.drop or batch.close:
                break
        self._finish(batch)
        if error is not None and not batch.drop and not batch.close:
            log.warning("%s: %s; generic_nack and close", self.peer, error)
            self.sim.stats.generic_nacks_sent += 1
            self.write([generic_nack(error.sequence_number, error.status)])
            buffer.clear()
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # ------------------------------------------------------------ PDU handling

    def _handle(self, frame: bytes, batch: Batch, now: float) -> None:
        _length, command_id, status, seq = HEADER.unpack_from(frame)
        if command_id == _SUBMIT_SM:
            self.sim.handle_submit(self, seq, frame[HEADER_LENGTH:], batch, now)
        elif command_id in _DELIVER_RESPS:
            self._on_deliver_result(seq, status)
        elif command_id == _QUERY_SM:
            self.sim.handle_query(self, seq, frame[HEADER_LENGTH:], batch)
        elif command_id == _ENQUIRE_LINK:
            self.sim.stats.enquire_links += 1
            batch.out.append(encode_raw(_ENQUIRE_LINK_RESP_ID, seq))
        elif command_id in BIND_MODES:
            self._on_bind(command_id, seq, frame[HEADER_LENGTH:], batch)
        elif command_id == CommandId.UNBIND:
            self.sim.stats.unbinds += 1
            log.info("%s: unbind (%s)", self.peer, self.system_id)
            self.sim.router.session_unbound(self)
            self.mode = None
            batch.out.append(encode_raw(CommandId.UNBIND_RESP, seq))
            batch.close = True
        elif command_id == CommandId.GENERIC_NACK:
            if seq in self.unacked:
                self._on_deliver_result(seq, status or Status.ESME_RSYSERR)
        elif command_id in _IGNORED_RESPONSES:
            if command_id == CommandId.UNBIND_RESP and self.transport is not None:
                self.transport.close()
        else:
            self.sim.stats.generic_nacks_sent += 1
            batch.out.append(generic_nack(seq, Status.ESME_RINVCMDID))

    def _on_bind(self, command_id: int, seq: int, body: bytes, batch: Batch) -> None:
        resp_id = command_id | 0x80000000
        stats = self.sim.stats
        try:
            fields, _tlvs = decode_body(command_id, body)
        except PduError as exc:
            stats.generic_nacks_sent += 1
            batch.out.append(generic_nack(seq, exc.status))
            return
        system_id, password = str(fields["system_id"]), str(fields["password"])
        credentials = self.sim.config.credentials
        if self.mode is not None:
            status = Status.ESME_RALYBND
        elif system_id not in credentials:
            status = Status.ESME_RINVSYSID
        elif credentials[system_id] != password:
            status = Status.ESME_RINVPASWD
        elif command_id != CommandId.BIND_TRANSMITTER and self.sim.config.single_receiver and any(
                s is not self and s.system_id == system_id and s.can_receive and s.is_open for s in self.sim.sessions):
            status = Status.ESME_RBINDFAIL
        else:
            status = Status.ESME_ROK
        if status != Status.ESME_ROK:
            stats.bind_failures += 1
            log.info("%s: %s for system_id %r refused: %s", self.peer, BIND_MODES[command_id], system_id,
                     status_name(status))
            batch.out.append(encode_raw(resp_id, seq, status=status))
            if status != Status.ESME_RALYBND:
                batch.close = True
            return
        self.system_id, self.mode = system_id, BIND_MODES[command_id]
        stats.binds += 1
        log.info("%s: bound as %s, system_id %r", self.peer, self.mode, system_id)
        body_out = encode_body(resp_id, {"system_id": self.sim.config.smsc_system_id}, {0x0210: b"\x34"})
        batch.out.append(encode_raw(resp_id, seq, body_out))
        self.sim.router.session_bound(self)
        if self.can_receive:
            batch.flush_pending = True

    def _on_deliver_result(self, seq: int, status: int) -> None:
        item = self.unacked.pop(seq, None)
        if item is None:
            return
        if status == 0:
            self.sim.stats.deliver_sm_resp += 1
        else:
            self.sim.router.deliver_failed(item, status)

    def _finish(self, batch: Batch) -> None:
        self.write(batch.out)
        if batch.flush_pending:
            self.sim.router.flush_pending(self)
        if batch.deferred or batch.receipts:
            self.sim.complete_submits(self, batch.deferred, batch.receipts)
        transport = self.transport
        if transport is None:
            return
        if batch.drop:
            self.sim.stats.drops += 1
            log.info("%s: dropping connection (drop_after)", self.peer)
            if transport.get_write_buffer_size():
                transport.close()
            else:
                transport.abort()
        elif batch.close:
            transport.close()
