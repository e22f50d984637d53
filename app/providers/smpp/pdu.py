"""Minimal SMPP 3.4 PDU codec (no third-party dependencies).

Over 400 lines because it is the tables of SMPP 3.4 itself (command ids, statuses, TLV tags, the field
layout of every PDU), one idea: encode and decode them.

A PDU is a 16-byte header (command_length, command_id, command_status, sequence_number, all
big-endian uint32) followed by a body of mandatory fields and optional TLVs. `Pdu.fields` holds the
mandatory body fields by their SMPP 3.4 names (C-octet strings as `str`, decoded latin-1; 1-byte
integers as `int`; `short_message` as `bytes`, `sm_length` is implicit). `Pdu.tlvs` maps tag ->
raw value bytes; use `tlv_int`/`tlv_cstr` to build values and `int_value`/`cstr_value` to read them.

Framing: `split_frames(buffer)` consumes every complete PDU from a bytearray (a read buffer) and
reports a `FramingError` for a command_length < 16 or > `MAX_PDU_LENGTH`, after which the stream
cannot be resynchronised (answer generic_nack and close).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

HEADER: Final = struct.Struct(">IIII")
HEADER_LENGTH: Final = 16
MAX_PDU_LENGTH: Final = 64 * 1024
RESPONSE_BIT: Final = 0x80000000


class CommandId(IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class Status(IntEnum):
    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RMSGQFUL = 0x14
    ESME_RINVESMCLASS = 0x43
    ESME_RSUBMITFAIL = 0x45
    ESME_RTHROTTLED = 0x58
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_RX_T_APPN = 0x64
    ESME_RX_P_APPN = 0x65
    ESME_RX_R_APPN = 0x66
    ESME_RQUERYFAIL = 0x67
    ESME_RUNKNOWNERR = 0xFF


class Tag(IntEnum):
    RECEIPTED_MESSAGE_ID = 0x001E
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427
    # Vendor TLVs of the seed (Russian) provider's spec.
    VENDOR_COST = 0x2000
    VENDOR_FLAGS = 0x2001
    VENDOR_PARTS = 0x2002
    VENDOR_MCCMNC = 0x2003
    VENDOR_ADDITIONAL_STATUS = 0x2004


def status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"0x{status:08X}"


def command_name(command_id: int) -> str:
    try:
        return CommandId(command_id).name.lower()
    except ValueError:
        return f"0x{command_id:08X}"


class PduError(Exception):
    """A PDU that cannot be decoded; `status` is the error to answer with (generic_nack)."""

    def __init__(self, message: str, status: int = Status.ESME_RINVCMDLEN, command_id: int = 0,
                 sequence_number: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.command_id = command_id
        self.sequence_number = sequence_number


class FramingError(PduError):
    """command_length out of range: the byte stream cannot be resynchronised."""


class UnknownCommandError(PduError):
    """A command_id without a known body layout (answer generic_nack ESME_RINVCMDID)."""


# Body layouts. Kinds: ("c", max octets incl. NUL) C-octet string, ("u8", 1) integer,
# ("sm", 254) sm_length + short_message octets.
_FieldSpec = tuple[str, str, int]
_BIND: tuple[_FieldSpec, ...] = (
    ("system_id", "c", 16), ("password", "c", 9), ("system_type", "c", 13),
    ("interface_version", "u8", 1), ("addr_ton", "u8", 1), ("addr_npi", "u8", 1),
    ("address_range", "c", 41),
)
_BIND_RESP: tuple[_FieldSpec, ...] = (("system_id", "c", 16),)
_SM: tuple[_FieldSpec, ...] = (
    ("service_type", "c", 6), ("source_addr_ton", "u8", 1), ("source_addr_npi", "u8", 1),
    ("source_addr", "c", 21), ("dest_addr_ton", "u8", 1), ("dest_addr_npi", "u8", 1),
    ("destination_addr", "c", 21), ("esm_class", "u8", 1), ("protocol_id", "u8", 1),
    ("priority_flag", "u8", 1), ("schedule_delivery_time", "c", 17), ("validity_period", "c", 17),
    ("registered_delivery", "u8", 1), ("replace_if_present_flag", "u8", 1), ("data_coding", "u8", 1),
    ("sm_default_msg_id", "u8", 1), ("short_message", "sm", 254),
)
_SM_RESP: tuple[_FieldSpec, ...] = (("message_id", "c", 65),)
# data_sm (§4.7.1): no times, no short_message (the text travels in message_payload); longer addresses.
_DATA_SM: tuple[_FieldSpec, ...] = (
    ("service_type", "c", 6), ("source_addr_ton", "u8", 1), ("source_addr_npi", "u8", 1),
    ("source_addr", "c", 65), ("dest_addr_ton", "u8", 1), ("dest_addr_npi", "u8", 1),
    ("destination_addr", "c", 65), ("esm_class", "u8", 1), ("registered_delivery", "u8", 1),
    ("data_coding", "u8", 1),
)
_QUERY_SM: tuple[_FieldSpec, ...] = (
    ("message_id", "c", 65), ("source_addr_ton", "u8", 1), ("source_addr_npi", "u8", 1), ("source_addr", "c", 21),
)
_QUERY_SM_RESP: tuple[_FieldSpec, ...] = (
    ("message_id", "c", 65), ("final_date", "c", 17), ("message_state", "u8", 1), ("error_code", "u8", 1),
)
_EMPTY: tuple[_FieldSpec, ...] = ()

BODY_LAYOUTS: Final[dict[int, tuple[_FieldSpec, ...]]] = {
    CommandId.BIND_RECEIVER: _BIND, CommandId.BIND_TRANSMITTER: _BIND, CommandId.BIND_TRANSCEIVER: _BIND,
    CommandId.BIND_RECEIVER_RESP: _BIND_RESP, CommandId.BIND_TRANSMITTER_RESP: _BIND_RESP,
    CommandId.BIND_TRANSCEIVER_RESP: _BIND_RESP,
    CommandId.UNBIND: _EMPTY, CommandId.UNBIND_RESP: _EMPTY,
    CommandId.ENQUIRE_LINK: _EMPTY, CommandId.ENQUIRE_LINK_RESP: _EMPTY, CommandId.GENERIC_NACK: _EMPTY,
    CommandId.SUBMIT_SM: _SM, CommandId.DELIVER_SM: _SM,
    CommandId.SUBMIT_SM_RESP: _SM_RESP, CommandId.DELIVER_SM_RESP: _SM_RESP,
    CommandId.DATA_SM: _DATA_SM, CommandId.DATA_SM_RESP: _SM_RESP,
    CommandId.QUERY_SM: _QUERY_SM, CommandId.QUERY_SM_RESP: _QUERY_SM_RESP,
}

FieldValue = int | str | bytes


@dataclass(slots=True)
class Pdu:
    command_id: int
    command_status: int = 0
    sequence_number: int = 0
    fields: dict[str, FieldValue] = field(default_factory=dict)
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        return command_name(self.command_id)

    def str_field(self, name: str) -> str:
        value = self.fields.get(name, "")
        return value if isinstance(value, str) else ""

    def int_field(self, name: str) -> int:
        value = self.fields.get(name, 0)
        return value if isinstance(value, int) else 0

    def bytes_field(self, name: str) -> bytes:
        value = self.fields.get(name, b"")
        return value if isinstance(value, bytes) else b""

    def encode(self) -> bytes:
        return encode_pdu(self)


# ---------------------------------------------------------------- TLVs


def tlv_int(value: int, size: int = 1) -> bytes:
    return value.to_bytes(size, "big")


def tlv_cstr(value: str) -> bytes:
    return value.encode("latin-1") + b"\x00"


def int_value(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def cstr_value(raw: bytes) -> str:
    end = raw.find(b"\x00")
    return (raw if end < 0 else raw[:end]).decode("latin-1")


def encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs.items())


def decode_tlvs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    end = len(data)
    while offset < end:
        if end - offset < 4:
            raise PduError("truncated TLV header", Status.ESME_RINVOPTPARSTREAM)
        tag, length = struct.unpack_from(">HH", data, offset)
        offset += 4
        if offset + length > end:
            raise PduError(f"TLV 0x{tag:04X} overruns the PDU", Status.ESME_RINVOPTPARSTREAM)
        tlvs[tag] = data[offset:offset + length]
        offset += length
    return tlvs


# ---------------------------------------------------------------- body / PDU codec


def decode_body(command_id: int, body: bytes) -> tuple[dict[str, FieldValue], dict[int, bytes]]:
    """Mandatory fields + TLVs of a body. Responses may omit the body (e.g. error resps)."""
    layout = BODY_LAYOUTS.get(command_id)
    if layout is None:
        raise UnknownCommandError(f"unsupported command {command_name(command_id)}", Status.ESME_RINVCMDID,
                                  command_id)
    fields: dict[str, FieldValue] = {}
    pos = 0
    end = len(body)
    if not body and command_id & RESPONSE_BIT:
        return fields, {}
    for name, kind, size in layout:
        if kind == "c":
            nul = body.find(b"\x00", pos, pos + size)
            if nul < 0:
                raise PduError(f"{name}: missing NUL terminator", Status.ESME_RINVCMDLEN, command_id)
            fields[name] = body[pos:nul].decode("latin-1")
            pos = nul + 1
        elif kind == "u8":
            if pos >= end:
                raise PduError(f"{name}: body too short", Status.ESME_RINVCMDLEN, command_id)
            fields[name] = body[pos]
            pos += 1
        else:  # "sm"
            if pos >= end:
                raise PduError("sm_length missing", Status.ESME_RINVCMDLEN, command_id)
            sm_length = body[pos]
            pos += 1
            if pos + sm_length > end:
                raise PduError("short_message overruns the PDU", Status.ESME_RINVMSGLEN, command_id)
            fields[name] = body[pos:pos + sm_length]
            pos += sm_length
    return fields, (decode_tlvs(body, pos) if pos < end else {})


def encode_body(command_id: int, fields: dict[str, FieldValue], tlvs: dict[int, bytes] | None = None) -> bytes:
    layout = BODY_LAYOUTS.get(command_id)
    if layout is None:
        raise UnknownCommandError(f"unsupported command {command_name(command_id)}", Status.ESME_RINVCMDID,
                                  command_id)
    out = bytearray()  # appended in place: no bytes object per field
    for name, kind, size in layout:
        value = fields.get(name)
        if kind == "u8":
            out.append(int(value or 0))
            continue
        raw = value if isinstance(value, bytes) else str(value or "").encode("latin-1")
        if kind == "c":
            if len(raw) >= size:
                raise ValueError(f"{name} longer than {size - 1} octets")
            out += raw
            out.append(0)
        else:
            if len(raw) > size:
                raise ValueError(f"short_message longer than {size} octets (use message_payload)")
            out.append(len(raw))
            out += raw
    if tlvs:
        out += encode_tlvs(tlvs)
    return bytes(out)


def encode_raw(command_id: int, sequence_number: int, body: bytes = b"", status: int = 0) -> bytes:
    return HEADER.pack(HEADER_LENGTH + len(body), command_id, status, sequence_number) + body


def encode_pdu(pdu: Pdu) -> bytes:
    if pdu.command_id & RESPONSE_BIT and pdu.command_status and not pdu.fields and not pdu.tlvs:
        body = b""  # error responses carry no body (SMPP 3.4 §4.1, common practice)
    else:
        body = encode_body(pdu.command_id, pdu.fields, pdu.tlvs)
    return encode_raw(pdu.command_id, pdu.sequence_number, body, pdu.command_status)


def decode_header(data: bytes | bytearray, offset: int = 0) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number)."""
    length, command_id, status, seq = HEADER.unpack_from(data, offset)
    return length, command_id, status, seq


def decode_pdu(data: bytes) -> Pdu:
    """Decode one complete PDU (exactly command_length bytes)."""
    if len(data) < HEADER_LENGTH:
        raise FramingError("PDU shorter than its header", Status.ESME_RINVCMDLEN)
    length, command_id, status, seq = HEADER.unpack_from(data)
    if length != len(data) or length > MAX_PDU_LENGTH:
        raise FramingError(f"command_length {length} != {len(data)}", Status.ESME_RINVCMDLEN, command_id, seq)
    try:
        fields, tlvs = decode_body(command_id, data[HEADER_LENGTH:])
    except PduError as exc:
        exc.sequence_number = seq
        exc.command_id = command_id
        raise
    return Pdu(command_id, status, seq, fields, tlvs)


def split_frames(buffer: bytearray, max_length: int = MAX_PDU_LENGTH) -> tuple[list[bytes], FramingError | None]:
    """Remove every complete PDU from the front of `buffer`; an incomplete tail stays in it.

    On a command_length < 16 or > max_length the frames before it are returned together with a
    FramingError (carrying that header's sequence number); the buffer is then left unconsumed.
    """
    frames: list[bytes] = []
    pos = 0
    available = len(buffer)
    error: FramingError | None = None
    while available - pos >= HEADER_LENGTH:
        length, command_id, _status, seq = HEADER.unpack_from(buffer, pos)
        if length < HEADER_LENGTH or length > max_length:
            error = FramingError(f"invalid command_length {length}", Status.ESME_RINVCMDLEN, command_id, seq)
            break
        if available - pos < length:
            break
        frames.append(bytes(buffer[pos:pos + length]))
        pos += length
    if pos:
        del buffer[:pos]
    return frames, error


def generic_nack(sequence_number: int, status: int) -> bytes:
    return HEADER.pack(HEADER_LENGTH, CommandId.GENERIC_NACK, status, sequence_number)


def response_for(command_id: int) -> int:
    return command_id | RESPONSE_BIT


# ---------------------------------------------------------------- concatenation


@dataclass(slots=True)
class ConcatInfo:
    reference: int
    total: int
    sequence: int
    via: str  # "udh" or "sar"


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """(udh incl. its length octet, payload) for a short_message with the UDHI flag set."""
    if not short_message:
        return b"", b""
    udh_end = 1 + short_message[0]
    return short_message[:udh_end], short_message[udh_end:]


def parse_udh_concat(udh: bytes) -> ConcatInfo | None:
    """Concatenation IE (IEI 0x00 8-bit ref or 0x08 16-bit ref) from a UDH incl. its length octet."""
    pos, end = 1, len(udh)
    while pos + 2 <= end:
        iei, ie_len = udh[pos], udh[pos + 1]
        data = udh[pos + 2:pos + 2 + ie_len]
        if iei == 0x00 and ie_len == 3 and len(data) == 3:
            return ConcatInfo(data[0], data[1], data[2], "udh")
        if iei == 0x08 and ie_len == 4 and len(data) == 4:
            return ConcatInfo((data[0] << 8) | data[1], data[2], data[3], "udh")
        pos += 2 + ie_len
    return None


def build_udh(reference: int, total: int, sequence: int) -> bytes:
    if reference > 0xFF:
        return bytes((6, 0x08, 4, (reference >> 8) & 0xFF, reference & 0xFF, total, sequence))
    return bytes((5, 0x00, 3, reference, total, sequence))


def concat_info(esm_class: int, short_message: bytes, tlvs: dict[int, bytes]) -> ConcatInfo | None:
    """Concatenation data of a submit_sm/deliver_sm part, from the UDH (esm_class 0x40) or SAR TLVs."""
    if esm_class & 0x40:
        info = parse_udh_concat(split_udh(short_message)[0])
        if info is not None:
            return info
    ref = tlvs.get(Tag.SAR_MSG_REF_NUM)
    total = tlvs.get(Tag.SAR_TOTAL_SEGMENTS)
    seq = tlvs.get(Tag.SAR_SEGMENT_SEQNUM)
    if ref is not None and total is not None and seq is not None:
        return ConcatInfo(int_value(ref), int_value(total), int_value(seq), "sar")
    return None


def message_octets(esm_class: int, short_message: bytes, tlvs: dict[int, bytes]) -> bytes:
    """The user data without UDH: message_payload TLV if present, else short_message."""
    payload = tlvs.get(Tag.MESSAGE_PAYLOAD)
    data = payload if payload is not None else short_message
    return split_udh(data)[1] if esm_class & 0x40 else data
