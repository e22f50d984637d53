"""The SMPP 3.4 upstream: ESME sessions on asyncio over the project's own PDU codec.

Why not aiosmpplib (the stack's first choice, measured in NOTES-stack.md): it sends deliver_sm_resp
by itself once its hook returns, so a receipt that could not be stored cannot be refused; it decodes
binary TLVs as text (the vendor TLVs of seed 004 come out mangled); its correlator is O(n); its SAR
path crashes; a slow hook stalls every PDU. Here:

- binds (seed 002, "only 1 TRx/Rx with multiple Tx"): with `sessions: N`, `transceiver` opens one
  transceiver and N-1 transmitters, `transmitter_receiver` N transmitters and one receiver;
- `window` submit_sm outstanding per bind (a semaphore released by the submit_sm_resp), sequence
  numbers correlated in a dict (O(1)), `throughput` submit_sm/s per provider (token bucket);
- each deliver_sm / data_sm is handled in its own task: stored through the ReportSink (group commit)
  and only then answered (deliver_sm_resp / data_sm_resp); if storing fails the answer is
  ESME_RSYSERR and the SMSC redelivers. Its esm_class message type (receipt_parse.deliver_kind) says
  what it is: a receipt or SME acknowledgement (applied), an intermediate notification (history
  only, never final), an MO message (the inbound queue), anything else (acknowledged and logged);
- a dropped bind fails its unanswered submits as UnknownOutcomeError (the dispatcher resubmits those:
  the only resubmit window), rebinds with exponential backoff and jitter; stop() unbinds cleanly;
- a submit_sm unanswered within `response_timeout` drops its bind at once: an SMSC that stopped
  answering (frozen, overloaded) still takes bytes into its socket buffer and may process them
  later, so refilling the window there would turn every later submit into a duplicate. The resubmits
  are then bounded by the window, each message once (Kannel's default `wait-ack-expire` also
  reconnects on an unacknowledged submit);
- temporary statuses (submit.py: Kannel's set plus the provider's `temporary_errors`) retry the
  message, ESME_RTHROTTLED / ESME_RMSGQFUL also pause the bind (growing pause), ESME_RINVBNDSTS
  rebinds; a long message refused part-way keeps the parts accepted (PartProgress) and the next
  attempt sends the rest with the same reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import SmppProviderConfig
from app.domain.encoding import decode_data_coding
from app.domain.ids import UpstreamId, normalise_upstream_id, receipt_id_candidates
from app.domain.status import MESSAGE_STATE_STAT, RECEIPT_STAT, REPORTED, Status
from app.providers.base import (
    InboundSms,
    PartProgress,
    PermanentError,
    ProviderError,
    ProviderState,
    Receipt,
    ReportSink,
    RetryableError,
    SinkClosed,
    SubmitResult,
    UnknownOutcomeError,
)
from app.providers.base import OutboundMessage as Outbound
from app.providers.smpp import pdu
from app.providers.smpp.pdu import (
    RESPONSE_BIT,
    CommandId,
    Pdu,
    PduError,
    command_name,
    concat_info,
    decode_pdu,
    encode_pdu,
    message_octets,
    response_for,
    split_frames,
)
from app.providers.smpp.receipt_parse import STATUS_KINDS, DeliverKind, deliver_kind, parse_receipt
from app.providers.smpp.submit import StatusClasses, build_parts, status_code
from app.providers.smpp.submit import relative_validity as relative_validity
from app.providers.throttle import Throttle

log = logging.getLogger("smsgw.smpp")

BIND_COMMAND = {"trx": CommandId.BIND_TRANSCEIVER, "tx": CommandId.BIND_TRANSMITTER, "rx": CommandId.BIND_RECEIVER}
# How an SMSC that allows one receiving bind per account refuses a second one (seed 002).
RECEIVER_TAKEN = frozenset({pdu.Status.ESME_RBINDFAIL, pdu.Status.ESME_RALYBND})
MO_PARTS_TTL = 300.0
QUERY_UNKNOWN_CODES = {0x67, 0x0C}  # ESME_RQUERYFAIL, ESME_RINVMSGID
ANSWERED_WINDOW = 30.0  # seconds; the dispatcher records a submit's outcome well within this


def bind_modes(bind: str, sessions: int) -> list[str]:
    """Seed 002 allows one receiving bind per account beside any number of transmitters."""
    if bind == "transceiver":
        return ["trx"] + ["tx"] * (sessions - 1)
    return ["tx"] * sessions + ["rx"]


class Bind:
    """One TCP connection to the SMSC, bound as transceiver, transmitter or receiver."""

    def __init__(self, provider: SmppProvider, mode: str, index: int) -> None:
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
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
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
            self._writer.close()

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
                writer.close()
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
        if self._writer is None or self._writer.is_closing():
            raise ConnectionError("not connected")
        self._writer.write(encode_pdu(pdu))

    async def _request(self, command: int, fields: dict[str, Any], tlvs: dict[int, bytes]) -> Pdu:
        seq = next(self._seq) & 0x7FFFFFFF or 1
        fut: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        try:
            self._write(Pdu(command, 0, seq, fields, tlvs))
        except Exception:
            self._pending.pop(seq, None)
            raise
        try:
            return await fut
        finally:
            self._pending.pop(seq, None)

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
                self._writer.close()
        elif pdu.command_id in (CommandId.DELIVER_SM, CommandId.DATA_SM):
            task = asyncio.create_task(self._deliver(pdu, self._writer))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        else:
            self._write(Pdu(CommandId.GENERIC_NACK, 0x03, pdu.sequence_number))

    async def _deliver(self, pdu: Pdu, writer: asyncio.StreamWriter | None) -> None:
        status = 0
        try:
            await self.p.on_deliver(pdu)
        except SinkClosed:
            log.info("deliver_sm %d arrived during shutdown; answering ESME_RSYSERR so the SMSC redelivers",
                     pdu.sequence_number)
            status = 0x08
        except Exception:
            log.exception("storing a deliver_sm failed; answering ESME_RSYSERR so the SMSC redelivers")
            status = 0x08
        if writer is not self._writer:
            # Its session is gone: on the next one this sequence number may name another deliver_sm, which
            # the answer would acknowledge unstored. Unanswered, this one is redelivered (and deduped).
            log.info("deliver_sm %d answered too late on %s: left to be redelivered", pdu.sequence_number, self.name)
            return
        with contextlib.suppress(Exception):
            self._write(Pdu(response_for(pdu.command_id), status, pdu.sequence_number,
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
                resp = await asyncio.wait_for(self._request(CommandId.SUBMIT_SM, fields, tlvs),
                                              self.cfg.response_timeout)
            except TimeoutError:
                # Before the slot is freed: no other submit_sm goes into a connection that stopped answering.
                self.drop(f"submit_sm unanswered for {self.cfg.response_timeout:g}s")
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


class SmppProvider:
    """An SMPP 3.4 upstream: `sessions` transmitting binds, one of them (or one more) receiving."""

    type = "smpp"

    def __init__(self, config: SmppProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.max_in_flight = config.sessions * config.window
        self.sink: ReportSink | None = None
        self.binds = [Bind(self, m, i) for i, m in enumerate(bind_modes(config.bind, config.sessions))]
        self.statuses = StatusClasses.for_provider(config.temporary_errors)
        self._rr = itertools.count()
        self._ref = itertools.count(random.randrange(0x10000))
        self._bucket = Throttle(config.throughput)
        self._mo_parts: dict[tuple[str, int], tuple[float, dict[int, str]]] = {}
        self._answered: dict[str, float] = {}  # normalised message_id of recent submit_sm_resp -> time.time()
        self.submitted = 0
        self.errors = 0
        self.last_error: str | None = None

    def answered(self, message_id: str) -> None:
        """Remember ids submit_sm_resp gave in the last ANSWERED_WINDOW seconds (see `_submitted_after`)."""
        now = time.time()  # wall clock: compared with the submitted_at the dispatcher writes after this
        recent = self._answered
        recent.pop(message_id, None)
        recent[message_id] = now
        while recent:
            oldest, at = next(iter(recent.items()))
            if now - at <= ANSWERED_WINDOW:
                break
            del recent[oldest]

    def _submitted_after(self, receipt_id: str) -> datetime | None:
        """For a receipt of an id answered moments ago: the time its part was submitted after. Its submit
        may not be recorded yet, and after an SMSC restart an older message may hold the same id: the
        receipt must wait for the new part rather than land on the old one."""
        for candidate in receipt_id_candidates(receipt_id, self.config.receipt_id_format):
            at = self._answered.get(candidate)
            if at is not None:
                return datetime.fromtimestamp(at, UTC) - timedelta(seconds=0.05)
        return None

    def note_error(self, text: str) -> None:
        self.errors += 1
        self.last_error = text

    async def start(self, sink: ReportSink) -> None:
        self.sink = sink
        for b in self.binds:
            b.start()

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.binds), return_exceptions=True)

    def receiver_taken(self, bind: Bind) -> None:
        """The SMSC refused our transceiver because another session (another replica) holds the account's
        receiving bind: send as a transmitter, and keep a receiver bind trying in the background, which
        takes over the receipts when that session goes."""
        if bind.mode != "trx":
            return
        log.warning("%s: the SMSC refused a transceiver (its receiving bind is taken); binding as transmitter, "
                    "a receiver keeps trying", bind.name)
        bind.mode = "tx"
        bind.name = bind.name[:-3] + "tx"
        receiver = Bind(self, "rx", len(self.binds))
        self.binds.append(receiver)
        if self.sink is not None:
            receiver.start()

    def is_available(self) -> bool:
        return any(b.bound and b.transmits for b in self.binds)

    def _pick(self) -> Bind:
        ready = [b for b in self.binds if b.bound and b.transmits]
        if not ready:
            raise RetryableError("NOT_BOUND", f"{self.name}: no bind up")
        return ready[next(self._rr) % len(ready)]

    async def submit(self, message: Outbound) -> SubmitResult:
        done = message.progress
        reference = done.reference if done is not None and done.reference is not None else next(self._ref) & 0xFFFF
        parts = build_parts(message, self.config, reference)
        accepted: dict[int, UpstreamId] = dict(done.accepted) if done is not None else {}
        bind = self._pick()
        for n, (fields, tlvs) in enumerate(parts, 1):
            if n in accepted:
                continue  # the SMSC has it from an earlier attempt: never twice
            try:
                await self._bucket.acquire()
                resp = await bind.submit(fields, tlvs)
                if resp.command_status != 0:
                    raise self._refusal(resp.command_status, n, bind)
            except ProviderError as exc:
                if accepted:
                    exc.progress = PartProgress(self.name, reference, len(parts), dict(accepted))
                raise
            accepted[n] = UpstreamId(resp.str_field("message_id"))
        self.submitted += 1
        return SubmitResult(tuple(accepted[n] for n in range(1, len(parts) + 1)))

    def _refusal(self, status: int, part: int, bind: Bind) -> ProviderError:
        code = status_code(status)
        self.note_error(f"submit_sm {code}")
        where = f"part {part}: " if part > 1 else ""
        if StatusClasses.needs_rebind(status):
            return RetryableError(code, f"{where}the SMSC lost our bind; rebinding", retry_after=0.5)
        if self.statuses.is_temporary(status):
            retry_after = bind.pause if StatusClasses.throttles(status) else None
            return RetryableError(code, f"{where}temporary error from the SMSC", retry_after=retry_after)
        return PermanentError(code, f"{where}submit_sm refused")

    async def query_status(self, upstream_id: UpstreamId) -> Receipt | None:
        return await self.query_status_from(upstream_id, None)

    async def query_status_from(self, upstream_id: UpstreamId, sender: str | None) -> Receipt | None:
        """query_sm (seed 004: "or by using a separate QUERY_SM command on request"): a Receipt once the
        SMSC says the message is final, None while it is still en route. An SMSC that does not know the
        id (ESME_RQUERYFAIL, ESME_RINVMSGID) will never send its receipt: undelivered, NO_RECEIPT."""
        ton, npi, addr = self._source_address(sender)
        resp = await self._pick().query({"message_id": str(upstream_id), "source_addr_ton": ton,
                                         "source_addr_npi": npi, "source_addr": addr})
        source = f"query_sm:{self.name}"
        if resp.command_status in QUERY_UNKNOWN_CODES:
            return Receipt(provider=self.name, upstream_id=upstream_id, status=Status.UNDELIVERED,
                           provider_status_code="NO_RECEIPT", source=source,
                           error_code=f"query_sm {status_code(resp.command_status)}")
        if resp.command_status != 0:
            raise RetryableError(status_code(resp.command_status), "query_sm refused")
        stat = MESSAGE_STATE_STAT.get(resp.int_field("message_state"))
        if stat is None or RECEIPT_STAT[stat] not in REPORTED:
            return None
        status = RECEIPT_STAT[stat]
        error = resp.int_field("error_code")
        return Receipt(provider=self.name, upstream_id=upstream_id, status=status, provider_status_code=stat,
                       source=source, error_code=str(error) if error and status is not Status.DELIVERED else None,
                       extra={"query_sm": {"final_date": resp.str_field("final_date")}})

    def _source_address(self, sender: str | None) -> tuple[int, int, str]:
        """(ton, npi, address) of the sender, as submit_sm wrote it (query_sm must repeat it)."""
        sender = sender or self.config.default_from or ""
        numeric = sender.lstrip("+").isdigit()
        ton = self.config.source_ton if self.config.source_ton is not None else (
            1 if numeric and sender.startswith("+") else (0 if numeric else 5))
        npi = self.config.source_npi if self.config.source_npi is not None else (1 if numeric else 0)
        return ton, npi, sender.lstrip("+")

    async def on_deliver(self, pdu: Pdu) -> None:
        """A deliver_sm or data_sm: a status report (by its esm_class message type) or an MO message."""
        assert self.sink is not None
        esm = pdu.int_field("esm_class")
        short = pdu.bytes_field("short_message")  # data_sm has none: its text is in message_payload
        kind = deliver_kind(esm)
        if kind is DeliverKind.MO:
            await self._on_mo(pdu, esm, short)
            return
        if kind not in STATUS_KINDS:
            # A conversation abort or a reserved type names no message of ours and is no customer's text.
            log.warning("%s from %s with esm_class 0x%02X (%s): acknowledged, not forwarded", pdu.name, self.name,
                        esm, kind.name.lower())
            return
        # An SME acknowledgement reports delivery by being sent; without a stat of its own it is DELIVRD.
        default = "DELIVRD" if kind in (DeliverKind.SME_ACK, DeliverKind.USER_ACK) else "UNKNOWN"
        parsed = parse_receipt(message_octets(0, short, pdu.tlvs), pdu.tlvs, default)
        if parsed is None:
            log.warning("%s receipt without a message id from %s", pdu.name, self.name)
            return
        status, source = parsed.status, f"smpp:{self.name}"
        if kind is DeliverKind.INTERMEDIATE:
            # The SMSC is still trying (even a stat like UNDELIV means "this attempt failed"): history only.
            status, source = Status.SENT, f"smpp:{self.name}:intermediate"
        await self.sink.receipts([Receipt(
            provider=self.name, upstream_id=parsed.upstream_id, status=status,
            provider_status_code=parsed.stat, source=source, error_code=parsed.error_code, extra=parsed.extra,
            submitted_after=self._submitted_after(parsed.upstream_id))])

    async def _on_mo(self, pdu: Pdu, esm: int, short: bytes) -> None:
        assert self.sink is not None
        source, dest = pdu.str_field("source_addr"), pdu.str_field("destination_addr")
        text = decode_data_coding(message_octets(esm, short, pdu.tlvs), pdu.int_field("data_coding"))
        info = concat_info(esm, short, pdu.tlvs)
        if info is not None and info.total > 1:
            now = time.monotonic()
            self._mo_parts = {k: v for k, v in self._mo_parts.items() if now - v[0] < MO_PARTS_TTL}
            key = (source, info.reference)
            _, parts = self._mo_parts.setdefault(key, (now, {}))
            parts[info.sequence] = text
            if len(parts) < info.total:
                return  # acknowledged; the SMSC will not resend it, so the part is held here
            del self._mo_parts[key]
            text = "".join(parts[i] for i in sorted(parts))
        # A redelivered MO (our ack lost) carries the same text: the same id within ten minutes dedupes it.
        bucket = int(time.time() // 600)
        digest = hashlib.sha256(f"{source}|{dest}|{text}|{bucket}".encode()).hexdigest()[:32]
        await self.sink.inbound(InboundSms(
            source=self.name, upstream_sid=f"mo-{digest}", from_number=_plus(source), to_number=_plus(dest),
            body=text, extra={"data_coding": pdu.int_field("data_coding")}))

    def state(self) -> ProviderState:
        up = [b for b in self.binds if b.bound]
        return ProviderState(
            name=self.name, type="smpp", connected=bool(up), in_flight=sum(b.in_flight for b in self.binds),
            sessions_up=len(up), sessions_total=len(self.binds), submitted=self.submitted, errors=self.errors,
            last_error=self.last_error,
            detail={b.name: {"bound": b.bound, "in_flight": b.in_flight,
                             "paused": max(0.0, b.paused_until - time.monotonic())} for b in self.binds},
        )


def _plus(number: str) -> str:
    return "+" + number if number.isdigit() and len(number) > 6 else number
