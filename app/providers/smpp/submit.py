"""The submit side of the ESME, pure: submit_sm fields for each part of a message, and what a
submit_sm_resp status means for the message.

Status classes (Kannel's `smpp_status_to_smscconn_failure_reason` is the reference operators trust):
- temporary: ESME_RSYSERR 0x08, ESME_RMSGQFUL 0x14, ESME_RTHROTTLED 0x58, ESME_RX_T_APPN 0x64, plus
  a provider's own `temporary_errors`: the message is retried with backoff;
- throttling (0x14, 0x58): also pauses the bind, with a growing pause;
- rebind (ESME_RINVBNDSTS 0x04): the SMSC no longer counts our session as bound, so the bind is
  dropped and bound again, and the message retried;
- anything else: the SMSC refused the message for good.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.config import SmppProviderConfig
from app.domain.encoding import LongMessageMode, data_coding, segment, udh_concat
from app.domain.messages import OutboundMessage
from app.providers.smpp.pdu import Status, Tag, tlv_int

TEMPORARY_STATUSES = frozenset({Status.ESME_RSYSERR, Status.ESME_RMSGQFUL, Status.ESME_RTHROTTLED,
                                Status.ESME_RX_T_APPN})
THROTTLE_STATUSES = frozenset({Status.ESME_RMSGQFUL, Status.ESME_RTHROTTLED})
REBIND_STATUSES = frozenset({Status.ESME_RINVBNDSTS})

# SMPP 3.4 §7.1.1 relative time: two digits per field, so 99 years is the longest it can say.
MAX_RELATIVE_YEARS = 99

Part = tuple[dict[str, Any], dict[int, bytes]]


def status_code(status: int) -> str:
    return f"0x{status:08X}"


@dataclass(frozen=True, slots=True)
class StatusClasses:
    """How one provider treats submit_sm_resp statuses (its config may add temporary ones)."""

    temporary: frozenset[int]

    @classmethod
    def for_provider(cls, extra: Iterable[int]) -> StatusClasses:
        return cls(TEMPORARY_STATUSES | frozenset(extra))

    def is_temporary(self, status: int) -> bool:
        return status in self.temporary or status in REBIND_STATUSES

    @staticmethod
    def throttles(status: int) -> bool:
        return status in THROTTLE_STATUSES

    @staticmethod
    def needs_rebind(status: int) -> bool:
        return status in REBIND_STATUSES


def relative_validity(seconds: int) -> str:
    """SMPP 3.4 relative time `YYMMDDhhmmss000R`; longer than 99 years is capped at the longest one
    the format can carry (rather than a three-digit year that shifts every field after it)."""
    seconds = max(0, seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    years, days = divmod(days, 365)
    months, days = divmod(days, 30)
    if years > MAX_RELATIVE_YEARS:
        return f"{MAX_RELATIVE_YEARS:02d}1130235959000R"
    return f"{years:02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def source_address(sender: str | None, config: SmppProviderConfig) -> tuple[int, int, str]:
    """(ton, npi, address) of a sender (None: the provider's default_from), as submit_sm writes it and
    query_sm must repeat it: `+` and digits international, digits alone unknown, else alphanumeric."""
    sender = sender or config.default_from or ""
    numeric = sender.lstrip("+").isdigit()
    ton = config.source_ton if config.source_ton is not None else (
        1 if numeric and sender.startswith("+") else (0 if numeric else 5))
    npi = config.source_npi if config.source_npi is not None else (1 if numeric else 0)
    return ton, npi, sender.lstrip("+")


def build_parts(msg: OutboundMessage, config: SmppProviderConfig, reference: int) -> list[Part]:
    """submit_sm fields and TLVs of each part. `reference` is the concatenation reference: all 16 bits
    go in sar_msg_ref_num, the low 8 in the UDH (IEI 0x00, the 8-bit form handsets all read)."""
    seg = segment(msg.body, msg.encoding, msg.long_message_mode, flash=msg.flash)
    dc = data_coding(seg.encoding, msg.flash)  # flash: 0x10 / 0x18 (a Latin-1 flash goes as UCS-2)
    ton, npi, source = source_address(msg.sender, config)
    base: dict[str, Any] = {
        "service_type": "", "source_addr_ton": ton, "source_addr_npi": npi, "source_addr": source,
        "dest_addr_ton": config.dest_ton,
        "dest_addr_npi": config.dest_npi, "destination_addr": msg.to.lstrip("+"), "esm_class": 0,
        "protocol_id": 0, "priority_flag": 0, "schedule_delivery_time": "",
        "validity_period": relative_validity(msg.validity_period) if msg.validity_period else "",
        "registered_delivery": 1, "replace_if_present_flag": 0, "data_coding": dc, "sm_default_msg_id": 0,
    }
    mode = msg.long_message_mode
    if mode is LongMessageMode.PAYLOAD and seg.segments > 1:
        return [({**base, "short_message": b""}, {Tag.MESSAGE_PAYLOAD: seg.parts[0]})]
    if len(seg.parts) == 1:
        return [({**base, "short_message": seg.parts[0]}, {})]
    total = len(seg.parts)
    out: list[Part] = []
    for i, data in enumerate(seg.parts, 1):
        if mode is LongMessageMode.SPLIT_SAR:
            out.append(({**base, "short_message": data},
                        {Tag.SAR_MSG_REF_NUM: tlv_int(reference & 0xFFFF, 2), Tag.SAR_TOTAL_SEGMENTS: tlv_int(total),
                         Tag.SAR_SEGMENT_SEQNUM: tlv_int(i)}))
        else:
            out.append(({**base, "esm_class": 0x40, "short_message": udh_concat(reference, total, i) + data}, {}))
    return out
