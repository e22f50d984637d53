"""The SMPP 3.4 provider: its binds laid out as seed 002 allows, submits through them, receipts and MO to the sink.

Our own ESME on asyncio over the project's PDU codec (pdu.py) rather than aiosmpplib: that library
sends deliver_sm_resp by itself once its hook returns, so a receipt that could not be stored cannot
be refused; it decodes binary TLVs as text (the vendor TLVs of seed 004 come out mangled); its
correlator is O(n); its SAR path crashes; a slow hook stalls every PDU. Here:

- binds (seed 002, "only 1 TRx/Rx with multiple Tx"): with `sessions: N`, `transceiver` opens one
  transceiver and N-1 transmitters, `transmitter_receiver` N transmitters and one receiver; each is a
  `Bind` (bind.py: window, correlation, enquire_link, rebinding); `throughput` submit_sm/s per
  provider (token bucket);
- a deliver_sm / data_sm's esm_class message type (receipt_parse.deliver_kind) says what it is: a
  receipt or SME acknowledgement (applied), an intermediate notification (history only, never final),
  an MO message (the inbound queue, its parts joined by mo_reassembly.py), anything else (acknowledged
  and logged); the bind answers it only once the ReportSink has committed it;
- temporary statuses (submit.py: Kannel's set plus the provider's `temporary_errors`) retry the
  message; a long message refused part-way keeps the parts accepted (PartProgress) and the next
  attempt sends the rest with the same reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from app.config import SmppProviderConfig
from app.domain.encoding import decode_data_coding
from app.domain.ids import UpstreamId, receipt_id_candidates
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
)
from app.providers.base import OutboundMessage as Outbound
from app.providers.smpp.bind import Bind
from app.providers.smpp.mo_reassembly import MoReassembly
from app.providers.smpp.pdu import Pdu, concat_info, message_octets
from app.providers.smpp.pdu import Status as PduStatus
from app.providers.smpp.receipt_parse import STATUS_KINDS, DeliverKind, deliver_kind, parse_receipt
from app.providers.smpp.submit import StatusClasses, build_parts, source_address, status_code
from app.providers.throttle import Throttle

log = logging.getLogger("smsgw.smpp")

QUERY_UNKNOWN_CODES = {0x67, 0x0C}  # ESME_RQUERYFAIL, ESME_RINVMSGID
ANSWERED_WINDOW = 30.0  # seconds; the dispatcher records a submit's outcome well within this


def bind_modes(bind: str, sessions: int) -> list[str]:
    """Seed 002 allows one receiving bind per account beside any number of transmitters."""
    if bind == "transceiver":
        return ["trx"] + ["tx"] * (sessions - 1)
    return ["tx"] * sessions + ["rx"]


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
        self._mo_parts = MoReassembly()
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
        ton, npi, addr = source_address(sender, self.config)
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

    async def on_delivers(self, pdus: Sequence[Pdu]) -> list[int]:
        """Store deliver_sm / data_sm PDUs that came in one read: each a status report (by its esm_class
        message type) or an MO message. Returns the command_status each one's answer carries, once what
        it holds is committed: 0, or ESME_RSYSERR for one that could not be stored (the SMSC redelivers
        it). The reports go to the sink together (one wait for the group commit, not one each); if that
        fails they are stored one by one, so one bad report does not refuse the others. MO messages are
        stored each in its own transaction, concurrently, their parts joined in the order they came."""
        statuses = [0] * len(pdus)
        reports: list[tuple[int, Receipt]] = []
        mo: list[int] = []
        for i, pdu in enumerate(pdus):
            try:
                kind = deliver_kind(pdu.int_field("esm_class"))
                if kind is DeliverKind.MO:
                    mo.append(i)
                    continue
                report = self._report_of(pdu, kind)
                if report is not None:
                    reports.append((i, report))
            except Exception as exc:
                statuses[i] = _refused(pdu, exc)
        if mo:
            # Each starts (and joins its part) in the order given, before the first one waits.
            stored = await asyncio.gather(*(self._on_mo(pdus[i]) for i in mo), return_exceptions=True)
            for i, outcome in zip(mo, stored, strict=True):
                if isinstance(outcome, Exception):
                    statuses[i] = _refused(pdus[i], outcome)
                elif isinstance(outcome, BaseException):
                    raise outcome
        if not reports:
            return statuses
        assert self.sink is not None
        try:
            await self.sink.receipts([r for _, r in reports])
        except Exception as exc:
            if len(reports) == 1 or isinstance(exc, SinkClosed):
                for i, _ in reports:
                    statuses[i] = _refused(pdus[i], exc)
                return statuses
            for i, report in reports:
                try:
                    await self.sink.receipts([report])
                except Exception as one:
                    statuses[i] = _refused(pdus[i], one)
        return statuses

    def _report_of(self, pdu: Pdu, kind: DeliverKind) -> Receipt | None:
        """The status report a deliver_sm / data_sm of message type `kind` (not MO) carries; None for one
        only acknowledged (logged)."""
        if kind not in STATUS_KINDS:
            # A conversation abort or a reserved type names no message of ours and is no customer's text.
            log.warning("%s from %s with esm_class 0x%02X (%s): acknowledged, not forwarded", pdu.name, self.name,
                        pdu.int_field("esm_class"), kind.name.lower())
            return None
        # An SME acknowledgement reports delivery by being sent; without a stat of its own it is DELIVRD.
        default = "DELIVRD" if kind in (DeliverKind.SME_ACK, DeliverKind.USER_ACK) else "UNKNOWN"
        # data_sm has no short_message: its text is in message_payload
        parsed = parse_receipt(message_octets(0, pdu.bytes_field("short_message"), pdu.tlvs), pdu.tlvs, default)
        if parsed is None:
            log.warning("%s receipt without a message id from %s", pdu.name, self.name)
            return None
        status, source = parsed.status, f"smpp:{self.name}"
        if kind is DeliverKind.INTERMEDIATE:
            # The SMSC is still trying (even a stat like UNDELIV means "this attempt failed"): history only.
            status, source = Status.SENT, f"smpp:{self.name}:intermediate"
        return Receipt(provider=self.name, upstream_id=parsed.upstream_id, status=status,
                       provider_status_code=parsed.stat, source=source, error_code=parsed.error_code,
                       extra=parsed.extra, submitted_after=self._submitted_after(parsed.upstream_id))

    async def _on_mo(self, pdu: Pdu) -> None:
        assert self.sink is not None
        esm, short = pdu.int_field("esm_class"), pdu.bytes_field("short_message")
        source, dest = pdu.str_field("source_addr"), pdu.str_field("destination_addr")
        text = decode_data_coding(message_octets(esm, short, pdu.tlvs), pdu.int_field("data_coding"))
        whole = self._mo_parts.add(source, concat_info(esm, short, pdu.tlvs), text)
        if whole is None:
            return  # acknowledged; the SMSC will not resend it, so the part is held until the rest comes
        text = whole
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



def _refused(pdu: Pdu, exc: Exception) -> int:
    """ESME_RSYSERR, the answer to a deliver_sm that could not be stored: the SMSC redelivers it."""
    if isinstance(exc, SinkClosed):
        log.info("%s %d arrived during shutdown; answering ESME_RSYSERR so the SMSC redelivers", pdu.name,
                 pdu.sequence_number)
    else:
        log.error("storing a %s failed; answering ESME_RSYSERR so the SMSC redelivers", pdu.name, exc_info=exc)
    return PduStatus.ESME_RSYSERR


def _plus(number: str) -> str:
    return "+" + number if number.isdigit() and len(number) > 6 else number
