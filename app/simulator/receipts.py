"""Message ids, outcomes, delivery receipts and MO deliver_sm bodies for the simulator."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from app.providers.smpp.pdu import CommandId, Tag, build_udh, encode_body, encode_tlvs, tlv_cstr, tlv_int
from app.simulator.text import ascii_safe, split_text

# Receipt `stat` values -> message_state TLV (SMPP 3.4 §5.2.28).
MESSAGE_STATES: Final[dict[str, int]] = {
    "ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7,
    "REJECTD": 8,
}
# `err` of the receipt text and network_error_code (GSM) per stat; nonzero for failures.
ERROR_CODES: Final[dict[str, int]] = {
    "DELIVRD": 0, "ACCEPTD": 0, "ENROUTE": 0, "UNDELIV": 1, "EXPIRED": 27, "REJECTD": 11, "DELETED": 6,
    "UNKNOWN": 34,
}
ID_FORMATS: Final = ("hex", "decimal", "uuid")
RECEIPT_ID_FORMATS: Final = ("same", "hex", "decimal")


class IdGenerator:
    """Sequential ids rendered as lowercase hex / decimal, or random UUIDs.

    `next()` returns (id for submit_sm_resp, id for the receipt); with receipt_format "hex" or "decimal"
    the receipt carries the same number in that base (e.g. resp "1a2b", receipt "6699").
    """

    def __init__(self, id_format: str = "hex", receipt_format: str = "same", start: int | None = None) -> None:
        if id_format not in ID_FORMATS:
            raise ValueError(f"id_format must be one of {ID_FORMATS}")
        if receipt_format not in RECEIPT_ID_FORMATS:
            raise ValueError(f"receipt_id_format must be one of {RECEIPT_ID_FORMATS}")
        self.id_format = id_format
        self.receipt_format = receipt_format
        # Time-based default start: ids stay unique across simulator restarts.
        self._next = start if start is not None else int(time.time() * 1000) << 8

    def restart(self, start: int) -> None:
        self._next = start

    def next(self) -> tuple[str, str]:
        if self.id_format == "uuid":
            u = uuid.uuid4()
            number, resp_id = u.int, str(u)
        else:
            number = self._next
            self._next += 1
            resp_id = format(number, "x") if self.id_format == "hex" else str(number)
        if self.receipt_format == "hex":
            return resp_id, format(number, "x")
        if self.receipt_format == "decimal":
            return resp_id, str(number)
        return resp_id, resp_id


def match_suffix(number: str, rules: Mapping[str, object]) -> str | None:
    """The longest suffix of `number` that is a key of `rules`."""
    if not rules or not number.endswith(tuple(rules)):
        return None
    best: str | None = None
    for suffix in rules:
        if number.endswith(suffix) and (best is None or len(suffix) > len(best)):
            best = suffix
    return best


class OutcomePicker:
    """Receipt stat for a destination: `dest_rules` (longest suffix wins) else weighted random."""

    def __init__(self, outcomes: Mapping[str, float], dest_rules: Mapping[str, str], rng: random.Random) -> None:
        for stat in (*outcomes, *dest_rules.values()):
            if stat not in MESSAGE_STATES:
                raise ValueError(f"unknown receipt stat {stat!r}; expected one of {sorted(MESSAGE_STATES)}")
        if not outcomes or sum(outcomes.values()) <= 0:
            raise ValueError("outcomes need a positive total weight")
        self._stats = list(outcomes)
        self._weights = list(outcomes.values())
        self._single = self._stats[0] if len(self._stats) == 1 else None
        self._rules = dict(dest_rules)
        self._rng = rng

    def pick(self, destination: str) -> str:
        if self._rules:
            suffix = match_suffix(destination, self._rules)
            if suffix is not None:
                return self._rules[suffix]
        if self._single is not None:
            return self._single
        return self._rng.choices(self._stats, self._weights)[0]


@dataclass(slots=True)
class Outbound:
    """A deliver_sm waiting for (or awaiting the deliver_sm_resp of) a bound receiver."""

    kind: str  # "receipt" or "mo"
    system_id: str | None  # None: any bound receiver
    body: bytes
    message_id: str = ""
    attempts: int = 0
    command_id: int = CommandId.DELIVER_SM  # or DATA_SM


_date_cache: dict[int, str] = {}


def smpp_date(ts: float) -> str:
    """YYMMDDhhmm (UTC), cached per minute."""
    minute = int(ts // 60)
    text = _date_cache.get(minute)
    if text is None:
        if len(_date_cache) > 64:
            _date_cache.clear()
        text = _date_cache[minute] = datetime.fromtimestamp(minute * 60, UTC).strftime("%y%m%d%H%M")
    return text


@dataclass(frozen=True, slots=True)
class ReceiptOptions:
    vendor_tlvs: bool = False
    vendor_cost: float = 0.05
    vendor_mccmnc: str = "25001"


def receipt_text(receipt_id: str, stat: str, submitted: float, done: float, text: str) -> str:
    dlvrd = 1 if stat == "DELIVRD" else 0
    return (f"id:{receipt_id} sub:001 dlvrd:{dlvrd:03d} submit date:{smpp_date(submitted)}"
            f" done date:{smpp_date(done)} stat:{stat} err:{ERROR_CODES[stat]:03d} text:{ascii_safe(text[:20])}")


def build_receipt_body(*, receipt_id: str, stat: str, source: str, source_ton: int, source_npi: int,
                       destination: str, dest_ton: int, dest_npi: int, submitted: float, text: str,
                       parts: int, options: ReceiptOptions, done: float | None = None, esm_class: int = 0x04,
                       data_sm: bool = False) -> bytes:
    """deliver_sm body of a receipt for a message submitted source -> destination (addresses swapped);
    esm_class 0x20 makes it an intermediate notification; `data_sm`: a data_sm body (text in
    message_payload)."""
    err = ERROR_CODES[stat]
    short_message = receipt_text(receipt_id, stat, submitted, done or time.time(), text).encode("ascii")
    tlvs = _receipt_tlvs(receipt_id, stat, err, parts, options)
    if data_sm:
        return encode_body(CommandId.DATA_SM, {
            "source_addr_ton": dest_ton, "source_addr_npi": dest_npi, "source_addr": destination,
            "dest_addr_ton": source_ton, "dest_addr_npi": source_npi, "destination_addr": source,
            "esm_class": esm_class, "data_coding": 0}, {**tlvs, Tag.MESSAGE_PAYLOAD: short_message})
    # Hand-rolled equivalent of encode_body(DELIVER_SM, ...) (hot path): service_type "", swapped
    # addresses, esm_class, empty times, data_coding 0, short_message, TLVs.
    return b"".join((
        b"\x00", bytes((dest_ton, dest_npi)), destination.encode("latin-1"), b"\x00",
        bytes((source_ton, source_npi)), source.encode("latin-1"), b"\x00",
        bytes((esm_class,)), b"\x00\x00\x00\x00\x00\x00\x00\x00", bytes((len(short_message),)), short_message,
        encode_tlvs(tlvs),
    ))


def _receipt_tlvs(receipt_id: str, stat: str, err: int, parts: int, options: ReceiptOptions) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {
        Tag.RECEIPTED_MESSAGE_ID: tlv_cstr(receipt_id),
        Tag.MESSAGE_STATE: tlv_int(MESSAGE_STATES[stat], 1),
        Tag.NETWORK_ERROR_CODE: b"\x03" + tlv_int(err, 2),
    }
    if options.vendor_tlvs:
        tlvs[Tag.VENDOR_COST] = tlv_cstr(f"{options.vendor_cost * parts:7.4f}")
        tlvs[Tag.VENDOR_FLAGS] = tlv_int(0, 2)
        tlvs[Tag.VENDOR_PARTS] = tlv_int(parts, 2)
        tlvs[Tag.VENDOR_MCCMNC] = tlv_cstr(options.vendor_mccmnc)
        tlvs[Tag.VENDOR_ADDITIONAL_STATUS] = tlv_int(err, 2)
    return tlvs


def query_sm_resp_body(message_id: str, stat: str, done: float | None) -> bytes:
    """query_sm_resp body: the state of a message, final_date set once it is final."""
    final = stat not in ("ENROUTE", "ACCEPTD") and done is not None
    final_date = datetime.fromtimestamp(done, UTC).strftime("%y%m%d%H%M%S") + "000+" if final and done else ""
    return encode_body(CommandId.QUERY_SM_RESP, {
        "message_id": message_id, "final_date": final_date, "message_state": MESSAGE_STATES[stat],
        "error_code": ERROR_CODES[stat] & 0xFF})


CONCAT_MODES: Final = ("none", "udh", "sar")


def build_mo_bodies(source: str, destination: str, text: str, *, data_coding: int = 0, concat: str = "none",
                    reference: int = 0, source_ton: int = 1, source_npi: int = 1, data_sm: bool = False) -> list[bytes]:
    """deliver_sm bodies (esm_class 0, or 0x40 with UDH) of a mobile-originated message.

    concat "none": one deliver_sm (message_payload TLV if over 254 octets); "udh"/"sar": split into
    parts (8-bit UDH reference when reference <= 255) if the text does not fit one SMS. `data_sm`:
    one data_sm with the whole text in message_payload (concat is then ignored).
    """
    if concat not in CONCAT_MODES:
        raise ValueError(f"concat must be one of {CONCAT_MODES}")
    if data_coding not in (0, 1, 3, 8):
        raise ValueError("data_coding must be 0, 1, 3 or 8")
    if data_sm:
        return [encode_body(CommandId.DATA_SM, {
            "source_addr_ton": source_ton, "source_addr_npi": source_npi, "source_addr": source,
            "dest_addr_ton": 0, "dest_addr_npi": 1, "destination_addr": destination, "data_coding": data_coding,
        }, {Tag.MESSAGE_PAYLOAD: b"".join(split_text(text, data_coding))})]
    base: dict[str, int | str | bytes] = {
        "source_addr_ton": source_ton, "source_addr_npi": source_npi, "source_addr": source,
        "dest_addr_ton": 0, "dest_addr_npi": 1, "destination_addr": destination,
        "data_coding": data_coding,
    }
    parts = split_text(text, data_coding) if concat != "none" else [b"".join(split_text(text, data_coding))]
    if len(parts) == 1:
        payload = parts[0]
        if len(payload) > 254:
            return [encode_body(CommandId.DELIVER_SM, {**base, "short_message": b""},
                                {Tag.MESSAGE_PAYLOAD: payload})]
        return [encode_body(CommandId.DELIVER_SM, {**base, "short_message": payload})]
    total = len(parts)
    bodies: list[bytes] = []
    for index, part in enumerate(parts, 1):
        if concat == "udh":
            fields = {**base, "esm_class": 0x40, "short_message": build_udh(reference, total, index) + part}
            bodies.append(encode_body(CommandId.DELIVER_SM, fields))
        else:
            tlvs: dict[int, bytes] = {
                Tag.SAR_MSG_REF_NUM: tlv_int(reference & 0xFFFF, 2),
                Tag.SAR_TOTAL_SEGMENTS: tlv_int(total),
                Tag.SAR_SEGMENT_SEQNUM: tlv_int(index),
            }
            bodies.append(encode_body(CommandId.DELIVER_SM, {**base, "short_message": part}, tlvs))
    return bodies
