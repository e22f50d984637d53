"""Text <-> short_message octets for the data_coding values the simulator uses.

data_coding 0: GSM 03.38 default alphabet, unpacked (one septet per octet, 0x1B escapes);
1: ASCII; 3: Latin-1; 8: UCS-2 (UTF-16BE); 0x10-0x1F (with a message class, e.g. flash) by their
alphabet bits; anything else is treated as Latin-1.
"""

from __future__ import annotations

from typing import Final

_GSM_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT: Final = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
                   0x3E: "]", 0x40: "|", 0x65: "€"}
_GSM_ENCODE: Final[dict[str, bytes]] = {ch: bytes((i,)) for i, ch in enumerate(_GSM_BASIC) if i != 0x1B}
_GSM_ENCODE.update({ch: bytes((0x1B, code)) for code, ch in _GSM_EXT.items()})
_GSM_DECODE_TABLE: Final = {i: ch for i, ch in enumerate(_GSM_BASIC)}

# Octets per part: single message / part of a concatenated one (6-octet UDH or SAR TLVs).
SINGLE_LIMIT: Final = {0: 160, 8: 140}
PART_LIMIT: Final = {0: 153, 8: 134}
DEFAULT_SINGLE_LIMIT: Final = 140
DEFAULT_PART_LIMIT: Final = 134


def gsm_encode(text: str) -> bytes:
    return b"".join(_GSM_ENCODE.get(ch, b"?") for ch in text)


def gsm_decode(data: bytes) -> str:
    if 0x1B not in data:
        return data.decode("latin-1").translate(_GSM_DECODE_TABLE)
    out: list[str] = []
    escape = False
    for octet in data:
        if escape:
            out.append(_GSM_EXT.get(octet, " "))
            escape = False
        elif octet == 0x1B:
            escape = True
        else:
            out.append(_GSM_BASIC[octet & 0x7F])
    return "".join(out)


def encode_text(text: str, data_coding: int = 0) -> bytes:
    if data_coding == 0:
        return gsm_encode(text)
    if data_coding == 8:
        return text.encode("utf-16-be")
    if data_coding == 1:
        return text.encode("ascii", "replace")
    return text.encode("latin-1", "replace")


def decode_text(data: bytes, data_coding: int = 0) -> str:
    if 0x10 <= data_coding <= 0x1F:  # TS 23.038 group 0001 (message class, e.g. flash): bits 3-2 alphabet
        alphabet = (data_coding >> 2) & 0x03
        data_coding = {0: 0, 2: 8}.get(alphabet, 4)  # 01 (8-bit data) and reserved: raw octets
    if data_coding == 0:
        return gsm_decode(data)
    if data_coding == 8:
        return data.decode("utf-16-be", "replace")
    return data.decode("latin-1")


def _units(text: str, data_coding: int) -> list[bytes]:
    """Encoded characters, never split inside an escape sequence or surrogate pair."""
    return [encode_text(ch, data_coding) for ch in text]


def split_text(text: str, data_coding: int = 0) -> list[bytes]:
    """Encoded parts: one if the text fits a single SMS, else parts sized for a 6-octet UDH."""
    encoded = encode_text(text, data_coding)
    if len(encoded) <= SINGLE_LIMIT.get(data_coding, DEFAULT_SINGLE_LIMIT):
        return [encoded]
    limit = PART_LIMIT.get(data_coding, DEFAULT_PART_LIMIT)
    parts: list[bytes] = []
    current = bytearray()
    for unit in _units(text, data_coding):
        if len(current) + len(unit) > limit:
            parts.append(bytes(current))
            current.clear()
        current += unit
    if current:
        parts.append(bytes(current))
    return parts


def ascii_safe(text: str) -> str:
    """Printable ASCII rendering (for receipt text: keeps the receipt parseable by any client)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
