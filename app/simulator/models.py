"""Configuration, counters and records of the SMSC simulator (re-exported by app.simulator.server)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, Final

from app.providers.smpp.pdu import ConcatInfo, Status, status_name

# Destination-suffix conventions (longest matching suffix wins), on by default so demos and
# end-to-end tests can force an outcome deterministically:
#   receipt stat:     ...0001 UNDELIV, ...0002 EXPIRED, ...0003 REJECTD, ...0004 DELETED, ...0005 UNKNOWN
#   submit rejection: ...9999 submit_sm_resp ESME_RINVDSTADR (0x0B), no message id, no receipt
DEFAULT_DEST_RULES: Final[dict[str, str]] = {
    "0001": "UNDELIV", "0002": "EXPIRED", "0003": "REJECTD", "0004": "DELETED", "0005": "UNKNOWN",
}
DEFAULT_REJECT_DEST_RULES: Final[dict[str, int]] = {"9999": int(Status.ESME_RINVDSTADR)}


@dataclass
class SubmitRule:
    """Answer `status` to the submit_sm that match: a destination ending in `suffix` ("" any) and, for a
    part of a concatenated message, its sequence number `part` (None any). Only the first `times`
    matches get it (0: every one), so a temporary error can be followed by an accepted resubmit.
    `answer` False: those submit_sm are left unanswered instead (and get no receipt)."""

    status: int = 0
    suffix: str = ""
    part: int | None = None
    times: int = 1
    answer: bool = True
    hits: int = 0

    def matches(self, destination: str, part: int | None) -> bool:
        if self.times and self.hits >= self.times:
            return False
        return destination.endswith(self.suffix) and (self.part is None or self.part == part)


@dataclass
class SimulatorConfig:
    """Behaviour of `SmscSimulator`; scalar fields may be changed at run time via `configure()`."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: ephemeral, read `sim.port` after start()
    credentials: dict[str, str] = field(default_factory=lambda: {"smppclient1": "password"})
    smsc_system_id: str = "SMSCSIM"  # system_id in bind_resp
    # Message ids: "hex" (lowercase), "decimal" or "uuid"; the receipt may use another base
    # ("same", "hex", "decimal"), e.g. resp "1a2b" / receipt "6699". id_start None: time-based.
    id_format: str = "hex"
    receipt_id_format: str = "same"
    id_start: int | None = None
    # Receipts (registered_delivery & 1): deliver_sm esm_class 0x04 after receipt_delay seconds.
    receipt_delay: float = 0.05
    receipt_before_response: bool = False  # receipt first, submit_sm_resp at max(delays)
    outcomes: dict[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})
    dest_rules: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DEST_RULES))
    reject_dest_rules: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_REJECT_DEST_RULES))
    duplicate_receipts: bool = False
    vendor_tlvs: bool = False  # 0x2000 cost, 0x2001 flags, 0x2002 parts, 0x2003 mccmnc, 0x2004 status
    vendor_cost: float = 0.05  # per part, rendered "%7.4f" (" 0.0500")
    vendor_mccmnc: str = "25001"
    long_message_single_id: bool = False  # one id + one receipt for all parts of a concatenated SMS
    # Receive-side variations: an intermediate notification (esm_class 0x20, stat ENROUTE) before each
    # receipt; receipts sent as data_sm (TLVs + message_payload) instead of deliver_sm; receipts decided
    # (query_sm answers them) but never sent, as an SMSC that lost them.
    intermediate_notifications: bool = False
    receipts_as_data_sm: bool = False
    drop_receipts: bool = False
    # Flow control / errors on submit_sm.
    throttle_rate: float = 0.0  # submit_sm/s per session above which ESME_RTHROTTLED; 0 = unlimited
    queue_full_every: int = 0  # every Nth submit_sm -> ESME_RMSGQFUL
    reject_rate: float = 0.0  # fraction -> ESME_RSUBMITFAIL
    submit_rules: list[SubmitRule] = field(default_factory=list)  # checked in order, before the above
    # Seed 002: "only 1 TRx/Rx with multiple Tx": a second receiving bind (receiver or transceiver) of a
    # system_id is refused with ESME_RBINDFAIL while the first is bound.
    single_receiver: bool = True
    # Faults.
    drop_after: int = 0  # the Nth submit_sm closes the connection unanswered
    drop_repeat: bool = False  # ... every Nth instead of only once
    response_delay: float = 0.0  # seconds before submit_sm_resp
    no_response_every: int = 0  # every Nth submit_sm is never answered (and gets no receipt)
    # deliver_sm (receipts, MO): redelivery after an error deliver_sm_resp / generic_nack.
    deliver_retry_delay: float = 1.0
    deliver_max_attempts: int = 5
    record_limit: int = 100_000
    track_duplicates: bool = True  # maintain submit_count_by_dest
    control_port: int | None = None  # line-based control port: None = off, 0 = ephemeral
    seed: int | None = None  # for the outcome mix / reject_rate


_DEFAULTS: Final = SimulatorConfig()
# Scalar settings that `SmscSimulator.configure()` / the control port `set` may change at run time.
RUNTIME_FIELDS: Final[dict[str, type]] = {
    f.name: type(getattr(_DEFAULTS, f.name))
    for f in fields(SimulatorConfig)
    if f.name not in ("host", "port", "control_port", "seed", "id_start")
    and isinstance(getattr(_DEFAULTS, f.name), bool | int | float | str)
}


def parse_value(kind: type, raw: str) -> Any:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    return kind(raw)


@dataclass
class SimulatorStats:
    connections: int = 0
    binds: int = 0
    bind_failures: int = 0
    unbinds: int = 0
    enquire_links: int = 0
    submit_sm: int = 0  # received
    submit_sm_resp: Counter[int] = field(default_factory=Counter)  # by command_status
    no_response: int = 0  # submit_sm deliberately left unanswered
    receipts_sent: int = 0  # deliver_sm receipts written (incl. duplicates and redeliveries)
    query_sm: int = 0  # received
    mo_sent: int = 0  # MO deliver_sm parts written (incl. redeliveries)
    redeliveries: int = 0
    deliver_sm_resp: int = 0  # ESME_ROK deliver_sm_resp received
    deliver_sm_errors: int = 0  # error deliver_sm_resp or generic_nack for a deliver_sm
    deliver_sm_failed: int = 0  # given up after deliver_max_attempts
    generic_nacks_sent: int = 0
    drops: int = 0  # connections closed abruptly by the simulator (drop_all, drop_after)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["submit_sm_resp"] = {status_name(k): v for k, v in sorted(self.submit_sm_resp.items())}
        return out


@dataclass(slots=True)
class SubmitRecord:
    """One received submit_sm (also the rejected ones: message_id None, status != 0)."""

    system_id: str
    sequence_number: int
    source: str
    destination: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    short_message: bytes
    tlvs: dict[int, bytes]
    text: str  # decoded user data, UDH stripped
    status: int
    message_id: str | None
    receipt_id: str | None
    stat: str | None  # receipt stat decided for it (None: no receipt requested / rejected)
    concat: ConcatInfo | None
    received_at: float
