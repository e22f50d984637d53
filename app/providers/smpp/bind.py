"""One bind to the SMSC: bind/unbind, the submit window, sequence correlation, enquire_link, dropping a silent bind.

- `window` submit_sm outstanding per bind (a semaphore released by the submit_sm_resp), sequence
  numbers correlated in a dict (O(1));
- the deliver_sm / data_sm of one read are stored together, in a task of their own (a slow store never
  stalls the other PDUs), and each is answered (deliver_sm_resp / data_sm_resp) only once its owner has
  stored it; if storing fails the answer is ESME_RSYSERR and the SMSC redelivers;
- a dropped bind fails its unanswered submits as UnknownOutcomeError (the dispatcher resubmits those:
  the only resubmit window), rebinds with exponential backoff and jitter; stop() unbinds cleanly;
- a submit_sm unanswered within `response_timeout` drops its bind at once: an SMSC that stopped
  answering (frozen, overloaded) still takes bytes into its socket buffer and may process them
  later, so refilling the window there would turn every later submit into a duplicate. The resubmits
  are then bounded by the window, each message once (Kannel's default `wait-ack-expire` also
  reconnects on an unacknowledged submit);
- ESME_RTHROTTLED / ESME_RMSGQFUL pause the bind (a growing pause), ESME_RINVBNDSTS drops it to rebind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from typing import Any, Protocol

from app.config import SmppProviderConfig
from app.domain.ids import normalise_upstream_id
from app.providers.base import RetryableError, UnknownOutcomeError
from app.providers.smpp import pdu
from app.providers.smpp.pdu import (
    RESPONSE_BIT,
    CommandId,
    Pdu,
    PduError,
    command_name,
    decode_pdu,
    encode_pdu,
    response_for,
    split_frames,
)
from app.providers.smpp.submit import StatusClasses, status_code

log = logging.getLogger("smsgw.smpp")

BIND_COMMAND = {"trx": CommandId.BIND_TRANSCEIVER, "tx": CommandId.BIND_TRANSMITTER, "rx": CommandId.BIND_RECEIVER}
# How an SMSC that allows one receiving bind per account refuses a second one (seed 002).
RECEIVER_TAKEN = frozenset({pdu.Status.ESME_RBINDFAIL, pdu.Status.ESME_RALYBND})


class BindOwner(Protocol):
    """What a bind needs of the provider it belongs to (SmppProvider)."""

    config: SmppProviderConfig
    name: str

    def note_error(self, text: str) -> None: ...

    def receiver_taken(self, bind: Bind) -> None:
        """The SMSC refused this transceiver because the account's receiving bind is held elsewhere."""

    def answered(self, message_id: str) -> None:
        """A submit_sm_resp gave this (normalised) message id."""

    async def on_delivers(self, pdus: list[Pdu]) -> list[int]:
        """Store deliver_sm / data_sm PDUs; returns, once they are committed, each one's answer status."""


class Bind:
    """One TCP connection to the SMSC, bound as transceiver, transmitter or receiver."""

    def __init__(self, provider: BindOwner, mode: str, index: int) -> None:
        self.p = provider
        self.cfg = provider.config
        self.mode = mode
        self.name = f"{provider.name}#{index}{mode}"
        self.bound = False
        self.window = asyncio.Semaphore(self.cfg.window)
        self.in_flight = 0
        self.paused_until = 0.0
        self.pause = 0.05
        self._seq = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Pdu]] = {}
        # submit_sm unanswered: sequence number -> the loop time its answer is due by, oldest first (all
        # wait the same time). One timer watches the oldest, instead of a timeout armed for every submit.
        self._due: dict[int, float] = {}
        self._watch: asyncio.TimerHandle | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._out: list[bytes] = []  # PDUs queued for the next write (_write)
        self._flush_due = False
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._arrived: list[Pdu] = []  # deliver_sm / data_sm of the read being dispatched
        self._stopping = False

    @property
    def transmits(self) -> bool:
        return self.mode in ("trx", "tx")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping = True
        if self.bound and self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._request(CommandId.UNBIND, {}, {}), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._close(self._writer)

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.cfg.host, self.cfg.port), 10.0)
            except (OSError, TimeoutError) as exc:
                self.p.note_error(f"connect: {type(exc).__name__}")
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 30.0)
                continue
            self._writer = writer
            reading = asyncio.create_task(self._read_loop(reader))
            try:
                resp = await asyncio.wait_for(self._request(BIND_COMMAND[self.mode], {
                    "system_id": self.cfg.system_id, "password": self.cfg.password.get_secret_value(),
                    "system_type": self.cfg.system_type, "interface_version": 0x34, "addr_ton": 0,
                    "addr_npi": 0, "address_range": ""}, {}), self.cfg.response_timeout)
                if resp.command_status != 0:
                    self.p.note_error(f"bind refused {status_code(resp.command_status)}")
                    if self.mode == "trx" and resp.command_status in RECEIVER_TAKEN:
                        self.p.receiver_taken(self)
                    raise ConnectionError("bind refused")
                self.bound = True
                backoff = 0.2
                log.info("bound %s to %s:%d", self.name, self.cfg.host, self.cfg.port)
                pinger = asyncio.create_task(self._enquire_links())
                try:
                    await reading
                finally:
                    pinger.cancel()
            except (ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                if not self._stopping:
                    self.p.note_error(f"session: {type(exc).__name__}: {exc}")
            finally:
                self.bound = False
                reading.cancel()
                self._close(writer)
                self._fail_pending(UnknownOutcomeError("CONNECTION_LOST", "bind dropped before the answer"))
            if not self._stopping:
                log.warning("bind %s lost; rebinding in %.1fs", self.name, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 30.0)

    def drop(self, reason: str) -> None:
        """Abort the connection (not a graceful close: its write buffer may never drain) and rebind.
        Nothing more is written on it; what it has unanswered ends as an unknown outcome."""
        if self._writer is None or self._writer.is_closing():
            return
        log.warning("dropping %s: %s", self.name, reason)
        self.p.note_error(f"dropped: {reason}")
        self.bound = False
        self._writer.transport.abort()

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        self._due.clear()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    async def _enquire_links(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.enquire_link_interval)
            try:
                await asyncio.wait_for(self._request(CommandId.ENQUIRE_LINK, {}, {}), self.cfg.response_timeout)
            except (TimeoutError, Exception):
                self.drop("enquire_link unanswered")
                return

    def _write(self, pdu: Pdu) -> None:
        """Queue `pdu` on this session. Every PDU queued in one turn of the event loop goes out in one
        write (one syscall for a window's worth of submit_sm and deliver_sm_resp, not one each)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            raise ConnectionError("not connected")
        self._out.append(encode_pdu(pdu))
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush, writer)

    def _flush(self, writer: asyncio.StreamWriter | None) -> None:
        """Write what is queued, if `writer` is still this bind's session (a new session must never get
        the old one's answers: their sequence numbers would name other PDUs there)."""
        self._flush_due = False
        out, self._out = self._out, []
        if out and writer is not None and writer is self._writer and not writer.is_closing():
            writer.write(b"".join(out))

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self._flush(writer)
        writer.close()

    async def _request(self, command: int, fields: dict[str, Any], tlvs: dict[int, bytes],
                       expires: bool = False) -> Pdu:
        """Send a request and wait for its answer; with `expires`, a TimeoutError once
        `response_timeout` has passed without one, and the bind is dropped then (`_expire`)."""
        seq = next(self._seq) & 0x7FFFFFFF or 1
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Pdu] = loop.create_future()
        self._pending[seq] = fut
        try:
            self._write(Pdu(command, 0, seq, fields, tlvs))
        except Exception:
            self._pending.pop(seq, None)
            raise
        if expires:
            due = self._due[seq] = loop.time() + self.cfg.response_timeout
            if self._watch is None:
                self._watch = loop.call_at(due, self._expire)
        try:
            return await fut
        finally:
            self._pending.pop(seq, None)
            if expires:
                self._due.pop(seq, None)

    def _expire(self) -> None:
        """The watch's timer: fail the submits whose answer is overdue and drop the bind at once, before
        their window slots are freed (no other submit_sm goes into a connection that stopped answering);
        then watch the oldest one left."""
        self._watch = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        overdue: list[int] = []
        for seq, due in self._due.items():
            if due > now:
                break
            overdue.append(seq)
        if overdue:
            self.drop(f"submit_sm unanswered for {self.cfg.response_timeout:g}s")
            for seq in overdue:
                del self._due[seq]
                fut = self._pending.get(seq)
                if fut is not None and not fut.done():
                    fut.set_exception(TimeoutError())
        if self._due:
            self._watch = loop.call_at(next(iter(self._due.values())), self._expire)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("SMSC closed the connection")
            buffer += chunk
            frames, error = split_frames(buffer)
            for raw in frames:
                self._dispatch(raw)
            if self._arrived:
                task = asyncio.create_task(self._deliver(self._arrived, self._writer))
                self._arrived = []
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
            if error is not None:
                raise ConnectionError(f"bad PDU framing from the SMSC: {error}")

    def _dispatch(self, raw: bytes) -> None:
        try:
            pdu = decode_pdu(raw)
        except PduError as exc:
            if exc.command_id & RESPONSE_BIT:
                # A response is never answered (not even with generic_nack); a request it may have been
                # meant for stays pending and ends as an unknown outcome when its time is up.
                log.warning("unreadable %s (seq %d) from the SMSC on %s: %s", command_name(exc.command_id),
                            exc.sequence_number, self.name, exc)
                return
            with contextlib.suppress(Exception):
                self._write(Pdu(CommandId.GENERIC_NACK, exc.status, exc.sequence_number))
            return
        if pdu.is_response:
            fut = self._pending.get(pdu.sequence_number)
            if fut is not None and not fut.done():
                fut.set_result(pdu)
            if pdu.command_id == CommandId.SUBMIT_SM_RESP and pdu.command_status == 0:
                self.p.answered(normalise_upstream_id(pdu.str_field("message_id")))
            return
        if pdu.command_id == CommandId.ENQUIRE_LINK:
            self._write(Pdu(CommandId.ENQUIRE_LINK_RESP, 0, pdu.sequence_number))
        elif pdu.command_id == CommandId.UNBIND:
            self._write(Pdu(CommandId.UNBIND_RESP, 0, pdu.sequence_number))
            if self._writer is not None:
                self._close(self._writer)
        elif pdu.command_id in (CommandId.DELIVER_SM, CommandId.DATA_SM):
            self._arrived.append(pdu)  # stored with the rest of the read (_read_loop)
        else:
            self._write(Pdu(CommandId.GENERIC_NACK, 0x03, pdu.sequence_number))

    async def _deliver(self, pdus: list[Pdu], writer: asyncio.StreamWriter | None) -> None:
        try:
            statuses = await self.p.on_delivers(pdus)
        except Exception:  # the owner answers for each PDU; this is a bug: none is acknowledged unstored
            log.exception("storing %d deliver_sm failed; answering ESME_RSYSERR so the SMSC redelivers", len(pdus))
            statuses = [pdu.Status.ESME_RSYSERR] * len(pdus)
        if writer is not self._writer:
            # Its session is gone: on the next one these sequence numbers may name other deliver_sm, which
            # the answers would acknowledge unstored. Unanswered, they are redelivered (and deduped).
            log.info("%d deliver_sm answered too late on %s: left to be redelivered", len(pdus), self.name)
            return
        if writer is not None and not writer.is_closing():  # else the session is going: the SMSC redelivers
            for request, status in zip(pdus, statuses, strict=True):
                self._write(Pdu(response_for(request.command_id), status, request.sequence_number,
                                {"message_id": ""} if status == 0 else {}))

    async def query(self, fields: dict[str, Any]) -> Pdu:
        """query_sm, outside the submit window (a status question is no message to send)."""
        if not self.bound:
            raise RetryableError("NOT_BOUND", f"{self.name} is not bound")
        try:
            return await asyncio.wait_for(self._request(CommandId.QUERY_SM, fields, {}), self.cfg.response_timeout)
        except TimeoutError:
            raise RetryableError("TIMEOUT", "no query_sm_resp in time") from None
        except ConnectionError as exc:
            raise RetryableError("NOT_BOUND", str(exc)) from None

    async def submit(self, fields: dict[str, Any], tlvs: dict[int, bytes]) -> Pdu:
        async with self.window:
            wait = self.paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not self.bound:
                raise RetryableError("NOT_BOUND", f"{self.name} is not bound")
            self.in_flight += 1
            try:
                resp = await self._request(CommandId.SUBMIT_SM, fields, tlvs, expires=True)
            except TimeoutError:  # the bind was dropped already (_expire)
                raise UnknownOutcomeError("TIMEOUT", "no submit_sm_resp in time") from None
            except ConnectionError as exc:
                raise RetryableError("NOT_BOUND", str(exc)) from None
            finally:
                self.in_flight -= 1
        status = resp.command_status
        if StatusClasses.throttles(status):
            self.paused_until = time.monotonic() + self.pause
            self.pause = min(self.pause * 2, 5.0)
        elif StatusClasses.needs_rebind(status):
            self.drop(f"SMSC answered {status_code(status)} (not bound)")
        elif status == 0:
            self.pause = 0.05
        return resp
