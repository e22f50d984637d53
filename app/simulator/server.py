"""SMPP 3.4 SMSC simulator on plain asyncio.

Over 400 lines because it holds a whole SMSC's session loop and its test knobs (submit rules, throttling,
receipt queueing, MO injection); the wire format is the product's own codec (providers/smpp/pdu.py).

    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.01))
    await sim.start()            # listens on 127.0.0.1:sim.port
    ...
    await sim.inject_mo("79001234567", "1234", "hello", concat="udh")
    sim.stats.submit_sm, sim.received[-1].text, sim.submit_count_by_dest[("79001234567", "hi")]
    await sim.drop_all(); await sim.stop(); await sim.start()   # restart on the same port

Receipts go round-robin to the sessions bound as receiver/transceiver for the submitting system_id;
with none bound they are queued, and deliver_sm not acknowledged before a disconnect are re-queued,
all delivered when a receiver binds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from typing import Any

from app.providers.smpp.pdu import (
    CommandId,
    ConcatInfo,
    PduError,
    Status,
    concat_info,
    decode_body,
    encode_raw,
    generic_nack,
    message_octets,
)
from app.simulator.control import ControlServer
from app.simulator.models import RUNTIME_FIELDS, SimulatorConfig, SimulatorStats, SubmitRecord, SubmitRule
from app.simulator.receipts import (
    IdGenerator,
    Outbound,
    OutcomePicker,
    ReceiptOptions,
    build_mo_bodies,
    build_receipt_body,
    match_suffix,
    query_sm_resp_body,
)
from app.simulator.routing import DeliverRouter
from app.simulator.session import Batch, SmppSession
from app.simulator.text import decode_text

__all__ = ["SimulatorConfig", "SimulatorStats", "SmscSimulator", "SubmitRecord", "SubmitRule"]

log = logging.getLogger("app.simulator")
_SUBMIT_SM_RESP = int(CommandId.SUBMIT_SM_RESP)
_CONCAT_LIMIT = 10_000


class _Concat:
    __slots__ = ("message_id", "parts", "receipt_id", "registered", "submitted")

    def __init__(self, message_id: str, receipt_id: str, submitted: float) -> None:
        self.message_id, self.receipt_id, self.submitted = message_id, receipt_id, submitted
        self.parts: dict[int, str] = {}
        self.registered = 0


class SmscSimulator:
    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.port = self.config.port
        self.control_port: int | None = None
        self.stats = SimulatorStats()
        self.received: deque[SubmitRecord] = deque(maxlen=self.config.record_limit)
        self.messages: dict[str, SubmitRecord] = {}  # message id (as in submit_sm_resp) -> record
        self.submit_count_by_dest: Counter[tuple[str, str]] = Counter()  # (destination, text) -> count
        self.sessions: set[SmppSession] = set()
        self.router = DeliverRouter(self.config, self.stats)
        self._rng = random.Random(self.config.seed)
        self._ids = IdGenerator(self.config.id_format, self.config.receipt_id_format, self.config.id_start)
        self._picker = OutcomePicker(self.config.outcomes, self.config.dest_rules, self._rng)
        self._receipt_options = ReceiptOptions()
        self._concat: dict[tuple[str, str, str, int, int], _Concat] = {}
        self._submit_counter = 0
        self._dropped_once = False
        self._mo_ref = 0
        self._server: asyncio.Server | None = None
        self._control: ControlServer | None = None
        self.configure()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SmppSession(self), self.config.host, self.port,
                                                reuse_address=True, backlog=256)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.control_port is not None and self._control is None:
            self._control = ControlServer(self)
            self.control_port = await self._control.start(self.config.host, self.control_port or
                                                          self.config.control_port)
        log.info("SMSC simulator listening on %s:%d", self.config.host, self.port)

    async def stop(self, unbind: bool = False) -> None:
        """Stop listening and close every connection (after an unbind if `unbind`).

        State (ids, records, queued and unacknowledged deliver_sm) is kept: start() again resumes
        on the same port and redelivers on the next bind.
        """
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        sessions = list(self.sessions)
        if unbind:
            for session in sessions:
                if session.mode is not None:
                    session.send_unbind()
            await self._wait_closed(sessions, 1.0)
        for session in sessions:
            if session.transport is not None:
                session.transport.close()
        if not await self._wait_closed(sessions, 2.0):
            for session in sessions:
                if session.transport is not None:
                    session.transport.abort()
            await self._wait_closed(sessions, 1.0)

    async def drop_all(self) -> int:
        """Abort every client connection (RST-like, nothing flushed); returns how many."""
        sessions = list(self.sessions)
        for session in sessions:
            if session.transport is not None:
                session.transport.abort()
        self.stats.drops += len(sessions)
        await self._wait_closed(sessions, 2.0)
        return len(sessions)

    @staticmethod
    async def _wait_closed(sessions: list[SmppSession], limit: float) -> bool:
        pending = [s.closed for s in sessions if not s.closed.done()]
        if not pending:
            return True
        _done, still = await asyncio.wait(pending, timeout=limit)
        return not still

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def configure(self, **changes: Any) -> None:
        """Change settings at run time (e.g. configure(reject_rate=0.5, outcomes={...})); validated first,
        nothing changes on a ValueError."""
        merged = dict(vars(self.config))
        for name, value in changes.items():
            if name not in merged:
                raise ValueError(f"unknown setting {name!r}")
            if RUNTIME_FIELDS.get(name) is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            merged[name] = value
        IdGenerator(merged["id_format"], merged["receipt_id_format"], 0)  # validates the formats
        picker = OutcomePicker(merged["outcomes"], merged["dest_rules"], self._rng)
        if merged["record_limit"] < 1:
            raise ValueError("record_limit must be positive")
        for name in changes:
            setattr(self.config, name, merged[name])
        cfg = self.config
        self._ids.id_format, self._ids.receipt_format = cfg.id_format, cfg.receipt_id_format
        self._picker = picker
        self._receipt_options = ReceiptOptions(cfg.vendor_tlvs, cfg.vendor_cost, cfg.vendor_mccmnc)
        if self.received.maxlen != cfg.record_limit:
            self.received = deque(self.received, maxlen=cfg.record_limit)

    def reset_stats(self) -> None:
        self.stats = self.router.stats = SimulatorStats()
        self.received.clear()
        self.messages.clear()
        self.submit_count_by_dest.clear()
        self._submit_counter = 0
        self._dropped_once = False

    def snapshot(self) -> dict[str, Any]:
        """Counters plus session / queue state, JSON-serialisable."""
        data = self.stats.to_dict()
        data["sessions"] = [{"peer": s.peer, "system_id": s.system_id, "mode": s.mode, "unacked": len(s.unacked)}
                            for s in self.sessions]
        data["pending"] = self.router.pending_count()
        data["duplicates"] = sum(1 for count in self.submit_count_by_dest.values() if count > 1)
        # Copies beyond the first, and the most copies of one message: what a resubmit bound is checked on.
        data["duplicate_submits"] = sum(count - 1 for count in self.submit_count_by_dest.values() if count > 1)
        data["max_copies"] = max(self.submit_count_by_dest.values(), default=0)
        return data

    # ------------------------------------------------------------ session registry

    def session_opened(self, session: SmppSession) -> None:
        self.sessions.add(session)
        self.stats.connections += 1
        log.info("connection from %s", session.peer)

    def session_closed(self, session: SmppSession) -> None:
        self.sessions.discard(session)
        session.mode = None
        log.info("connection from %s closed", session.peer)
        self.router.session_closed(session)

    @property
    def pending(self) -> dict[str | None, deque[Outbound]]:
        """deliver_sm (receipts, MO) waiting for a receiver to bind, by system_id."""
        return self.router.pending

    def dispatch(self, items: list[Outbound]) -> None:
        self.router.dispatch(items)

    def complete_submits(self, session: SmppSession, deferred: list[bytes], receipts: list[Outbound]) -> None:
        """Write held-back submit_sm_resp and schedule receipts according to the delays."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        if cfg.receipt_before_response:
            delay = max(cfg.receipt_delay if receipts else 0.0, cfg.response_delay)
            if delay <= 0:
                self._receipts_then_responses(session, receipts, deferred)
            else:
                loop.call_later(delay, self._receipts_then_responses, session, receipts, deferred)
        elif deferred:
            loop.call_later(cfg.response_delay, self._responses_then_receipts, session, deferred, receipts)
        else:
            self._schedule_receipts(receipts)

    def _receipts_then_responses(self, session: SmppSession, receipts: list[Outbound], resps: list[bytes]) -> None:
        if receipts:
            self.dispatch(receipts)
        session.write(resps)

    def _responses_then_receipts(self, session: SmppSession, resps: list[bytes], receipts: list[Outbound]) -> None:
        session.write(resps)
        self._schedule_receipts(receipts)

    def _schedule_receipts(self, receipts: list[Outbound]) -> None:
        if not receipts:
            return
        if self.config.receipt_delay <= 0:
            self.dispatch(receipts)
        else:
            asyncio.get_running_loop().call_later(self.config.receipt_delay, self.dispatch, receipts)

    # ------------------------------------------------------------ submit_sm

    def handle_submit(self, session: SmppSession, seq: int, body: bytes, batch: Batch, now: float) -> None:
        cfg = self.config
        stats = self.stats
        stats.submit_sm += 1
        self._submit_counter += 1
        n = self._submit_counter
        out = batch.deferred if cfg.response_delay > 0 or cfg.receipt_before_response else batch.out
        if not session.can_submit:
            stats.submit_sm_resp[Status.ESME_RINVBNDSTS] += 1
            batch.out.append(encode_raw(_SUBMIT_SM_RESP, seq, status=Status.ESME_RINVBNDSTS))
            return
        if cfg.drop_after and (n == cfg.drop_after or (cfg.drop_repeat and n % cfg.drop_after == 0)) and (
            cfg.drop_repeat or not self._dropped_once
        ):
            self._dropped_once = True
            batch.drop = True
            return
        try:
            fields, tlvs = decode_body(CommandId.SUBMIT_SM, body)
        except PduError as exc:
            stats.generic_nacks_sent += 1
            batch.out.append(generic_nack(seq, exc.status))
            return
        if cfg.no_response_every and n % cfg.no_response_every == 0:
            stats.no_response += 1
            return
        source = fields["source_addr"]
        dest = fields["destination_addr"]
        esm_class = fields["esm_class"]
        data_coding = fields["data_coding"]
        short_message = fields["short_message"]
        assert isinstance(source, str) and isinstance(dest, str) and isinstance(short_message, bytes)
        assert isinstance(esm_class, int) and isinstance(data_coding, int)
        concat = concat_info(esm_class, short_message, tlvs)
        status: int = Status.ESME_ROK
        rule = self._submit_rule(dest, concat)
        if rule is not None:
            rule.hits += 1
            status = rule.status
            if not rule.answer:
                stats.no_response += 1
                return
        elif cfg.throttle_rate > 0 and not session.take_token(now, cfg.throttle_rate):
            status = Status.ESME_RTHROTTLED
        elif cfg.queue_full_every and n % cfg.queue_full_every == 0:
            status = Status.ESME_RMSGQFUL
        elif cfg.reject_dest_rules and (suffix := match_suffix(dest, cfg.reject_dest_rules)) is not None:
            status = cfg.reject_dest_rules[suffix]
        elif cfg.reject_rate > 0 and self._rng.random() < cfg.reject_rate:
            status = Status.ESME_RSUBMITFAIL
        text = decode_text(message_octets(esm_class, short_message, tlvs), data_coding)
        registered = int(fields["registered_delivery"]) & 0x01
        system_id = session.system_id or ""
        message_id = receipt_id = stat = None
        if status == Status.ESME_ROK:
            if cfg.long_message_single_id and concat is not None and concat.total > 1:
                message_id, receipt_id, stat = self._concat_part(system_id, fields, concat, text, registered,
                                                                 batch.receipts)
            else:
                message_id, receipt_id = self._ids.next()
                if registered:
                    stat = self._picker.pick(dest)
                    self._add_receipt(batch.receipts, system_id, fields, message_id, receipt_id, stat, text, 1,
                                      time.time())
            out.append(encode_raw(_SUBMIT_SM_RESP, seq, message_id.encode("latin-1") + b"\x00"))
        else:
            out.append(encode_raw(_SUBMIT_SM_RESP, seq, status=status))
        stats.submit_sm_resp[status] += 1
        record = SubmitRecord(system_id, seq, source, dest, data_coding, esm_class, int(fields["registered_delivery"]),
                              short_message, tlvs, text, status, message_id, receipt_id, stat, concat, time.time())
        received = self.received
        if len(received) == received.maxlen and received:
            oldest = received[0]
            if oldest.message_id is not None and self.messages.get(oldest.message_id) is oldest:
                del self.messages[oldest.message_id]
        received.append(record)
        if message_id is not None:
            self.messages[message_id] = record
        if cfg.track_duplicates:
            self.submit_count_by_dest[(dest, text)] += 1

    def _submit_rule(self, dest: str, concat: ConcatInfo | None) -> SubmitRule | None:
        part = concat.sequence if concat is not None and concat.total > 1 else None
        for rule in self.config.submit_rules:
            if rule.matches(dest, part):
                return rule
        return None

    def _concat_part(self, system_id: str, fields: dict[str, Any], concat: ConcatInfo, text: str, registered: int,
                     receipts: list[Outbound]) -> tuple[str, str, str | None]:
        key = (system_id, fields["source_addr"], fields["destination_addr"], concat.reference, concat.total)
        state = self._concat.get(key)
        if state is None:
            message_id, receipt_id = self._ids.next()
            state = _Concat(message_id, receipt_id, time.time())
            if len(self._concat) >= _CONCAT_LIMIT:
                del self._concat[next(iter(self._concat))]
            self._concat[key] = state
        state.parts[concat.sequence] = text
        state.registered |= registered
        stat: str | None = None
        if len(state.parts) >= concat.total:
            del self._concat[key]
            if state.registered:
                stat = self._picker.pick(str(fields["destination_addr"]))
                full_text = "".join(state.parts[i] for i in sorted(state.parts))
                self._add_receipt(receipts, system_id, fields, state.message_id, state.receipt_id, stat, full_text,
                                  concat.total, state.submitted)
        return state.message_id, state.receipt_id, stat

    def _add_receipt(self, receipts: list[Outbound], system_id: str, fields: dict[str, Any], message_id: str,
                     receipt_id: str, stat: str, text: str, parts: int, submitted: float) -> None:
        cfg = self.config

        def body(stat: str, esm_class: int, data_sm: bool) -> bytes:
            return build_receipt_body(
                receipt_id=receipt_id, stat=stat, source=fields["source_addr"], source_ton=fields["source_addr_ton"],
                source_npi=fields["source_addr_npi"], destination=fields["destination_addr"],
                dest_ton=fields["dest_addr_ton"], dest_npi=fields["dest_addr_npi"], submitted=submitted, text=text,
                parts=parts, options=self._receipt_options, done=submitted + cfg.receipt_delay, esm_class=esm_class,
                data_sm=data_sm)

        if cfg.intermediate_notifications:
            receipts.append(Outbound("receipt", system_id, body("ENROUTE", 0x20, False), message_id))
        if cfg.drop_receipts:
            return
        command = CommandId.DATA_SM if cfg.receipts_as_data_sm else CommandId.DELIVER_SM
        final = Outbound("receipt", system_id, body(stat, 0x04, cfg.receipts_as_data_sm), message_id,
                         command_id=command)
        receipts.append(final)
        if cfg.duplicate_receipts:
            receipts.append(Outbound("receipt", system_id, final.body, message_id, command_id=command))

    # ------------------------------------------------------------ query_sm

    def handle_query(self, session: SmppSession, seq: int, body: bytes, batch: Batch) -> None:
        """query_sm: the state of a message this simulator accepted (by its submit_sm_resp id)."""
        self.stats.query_sm += 1
        resp = int(CommandId.QUERY_SM_RESP)
        if not session.can_submit:
            batch.out.append(encode_raw(resp, seq, status=Status.ESME_RINVBNDSTS))
            return
        try:
            fields, _tlvs = decode_body(CommandId.QUERY_SM, body)
        except PduError as exc:
            self.stats.generic_nacks_sent += 1
            batch.out.append(generic_nack(seq, exc.status))
            return
        record = self.messages.get(str(fields["message_id"]))
        if record is None or record.system_id != session.system_id:
            batch.out.append(encode_raw(resp, seq, status=Status.ESME_RQUERYFAIL))
            return
        done = record.received_at + self.config.receipt_delay
        stat = record.stat if record.stat is not None and time.time() >= done else "ENROUTE"
        batch.out.append(encode_raw(resp, seq, query_sm_resp_body(str(fields["message_id"]), stat, done)))

    def restart_ids(self, start: int) -> None:
        """Restart the message id counter (an SMSC whose counter resets on restart reuses old ids)."""
        self._ids.restart(start)

    # ------------------------------------------------------------ MO

    async def inject_mo(self, source: str, dest: str, text: str, data_coding: int = 0, concat: str = "none",
                        system_id: str | None = None, data_sm: bool = False) -> int:
        """Send a mobile-originated message (deliver_sm, esm_class 0; or one data_sm) to a bound receiver
        of `system_id` (None: any); queued until one binds. Returns the number of parts."""
        if concat == "sar":
            self._mo_ref = (self._mo_ref + 1) & 0xFFFF
        else:
            self._mo_ref = (self._mo_ref + 1) & 0xFF
        bodies = build_mo_bodies(source, dest, text, data_coding=data_coding, concat=concat, reference=self._mo_ref,
                                 data_sm=data_sm)
        command = CommandId.DATA_SM if data_sm else CommandId.DELIVER_SM
        self.dispatch([Outbound("mo", system_id, body, command_id=command) for body in bodies])
        await asyncio.sleep(0)
        return len(bodies)

    # ------------------------------------------------------------ helpers for tests

    def find_submits(self, destination: str | None = None, text: str | None = None) -> list[SubmitRecord]:
        return [r for r in self.received
                if (destination is None or r.destination == destination) and (text is None or r.text == text)]

    def unacked_count(self) -> int:
        return sum(len(s.unacked) for s in self.sessions)

    def pending_count(self) -> int:
        return self.router.pending_count()

