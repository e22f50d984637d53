"""SMS text encodings and segmentation (pure).

Sizes, in the units each encoding counts:
- GSM 03.38 (data_coding 0): 160 septets in one message, 153 per part of a long one (the 6-byte
  UDH costs 7 septets). The extension table characters ``^ { } \\ [ ~ ] | €`` and form feed cost two
  septets (ESC + char) and an escape pair is never split across parts.
- Latin-1 (data_coding 3): 140 octets, 134 per part.
- UCS-2 (data_coding 8, UTF-16-BE on the wire): 70 units, 67 per part; a character outside the BMP
  costs two units (a surrogate pair), and a pair is never split across parts.
`auto` is GSM-7 when every character is in GSM 03.38 (basic + extension table), else UCS-2: the two
encodings that exist over the air (TS 23.038: GSM-7, 8-bit, UCS-2). Latin-1 (data_coding 3) is only
used when asked for, and only where the route's provider takes it: an SMSC given Latin-1 transcodes
(losing characters or re-splitting), so the `Segments` we bill would not be what reaches the handset.
A flash (class 0) message is data_coding 0x10 (GSM-7) or 0x18 (UCS-2); Latin-1 has no class bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Encoding(StrEnum):
    GSM7 = "GSM7"
    LATIN1 = "LATIN1"
    UCS2 = "UCS2"


class LongMessageMode(StrEnum):
    SPLIT = "split"
    SPLIT_SAR = "split_sar"
    PAYLOAD = "payload"
    CUT = "cut"


class EncodingError(ValueError):
    pass


DATA_CODING: dict[Encoding, int] = {Encoding.GSM7: 0, Encoding.LATIN1: 3, Encoding.UCS2: 8}
# Class 0 (flash): data coding group 0001 with the alphabet bits (TS 23.038 §4): GSM-7 0x10, UCS-2 0x18.
FLASH_DATA_CODING: dict[Encoding, int] = {Encoding.GSM7: 0x10, Encoding.UCS2: 0x18}
SINGLE: dict[Encoding, int] = {Encoding.GSM7: 160, Encoding.LATIN1: 140, Encoding.UCS2: 70}
MULTI: dict[Encoding, int] = {Encoding.GSM7: 153, Encoding.LATIN1: 134, Encoding.UCS2: 67}

# GSM 03.38 default alphabet, in code order (0x00..0x7F); 0x1B is the escape to the extension table.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
           "|": 0x40, "€": 0x65}
_BASIC_CODE = {ch: i for i, ch in enumerate(GSM_BASIC) if ch != "\x1b"}
_BASIC_CHAR = {i: ch for ch, i in _BASIC_CODE.items()}
_EXT_CHAR = {code: ch for ch, code in GSM_EXT.items()}


def parse_requested_encoding(value: str | None) -> Encoding | None:
    """`auto`/None → None (choose); `gsm7`, `latin1`, `ucs2` in any case → that encoding."""
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    try:
        return Encoding(value.strip().upper())
    except ValueError:
        raise EncodingError("Encoding must be auto, gsm7, latin1 or ucs2") from None


def _char_units(ch: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        if ch in _BASIC_CODE:
            return 1
        if ch in GSM_EXT:
            return 2
        raise EncodingError(f"{ch!r} (U+{ord(ch):04X}) is not in the GSM 03.38 alphabet")
    if encoding is Encoding.LATIN1:
        if ord(ch) > 0xFF:
            raise EncodingError(f"{ch!r} (U+{ord(ch):04X}) is not in Latin-1")
        return 1
    return 2 if ord(ch) > 0xFFFF else 1


# For the whole-text checks below: set and str methods run in C, a generator over characters does not.
_GSM_CHARS = frozenset(_BASIC_CODE) | frozenset(GSM_EXT)
_EXT_CHARS = tuple(GSM_EXT)
_EXT_SET = frozenset(GSM_EXT)
# Each GSM 03.38 character to its septet (an extension character to ESC and its code), for str.translate:
# every code is below 0x80, so the translated text encodes to the septets as Latin-1.
_SEPTETS = str.maketrans({**{ch: chr(code) for ch, code in _BASIC_CODE.items()},
                          **{ch: "\x1b" + chr(code) for ch, code in GSM_EXT.items()}})


def is_gsm7(text: str) -> bool:
    return _GSM_CHARS.issuperset(text)


def length_units(text: str, encoding: Encoding) -> int:
    """Septets (extension characters count two), octets, or UTF-16 units."""
    if not text:
        return 0
    if encoding is Encoding.GSM7:
        if is_gsm7(text):
            return len(text) if _EXT_SET.isdisjoint(text) else len(text) + sum(map(text.count, _EXT_CHARS))
    elif encoding is Encoding.LATIN1:
        if max(text) <= "\xff":
            return len(text)
    elif max(text) <= "\uffff":
        return len(text)
    else:  # a character outside the BMP is a surrogate pair; a lone surrogate one unit, as ord() says
        return len(text.encode("utf-16-le", errors="surrogatepass")) // 2
    return sum(_char_units(ch, encoding) for ch in text)  # raises, naming the first character that does not fit


def _uniform(text: str, encoding: Encoding) -> bool:
    """Whether every character of `text` costs one unit in `encoding` (then a part boundary can fall
    anywhere, and the part count is plain arithmetic)."""
    if encoding is Encoding.GSM7:
        return _EXT_SET.isdisjoint(text)
    if encoding is Encoding.UCS2:
        return not text or max(text) <= "\uffff"
    return True


def split_text(text: str, encoding: Encoding) -> list[str]:
    """The text of each part: the whole text if it fits one message, else chunks of the part size."""
    if length_units(text, encoding) <= SINGLE[encoding]:
        return [text]
    size = MULTI[encoding]
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:  # a character (escape pair, surrogate pair) is never split
        cost = _char_units(ch, encoding)
        if used + cost > size:
            chunks.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += cost
    if current:
        chunks.append("".join(current))
    return chunks


def count_segments(text: str, encoding: Encoding) -> int:
    """len(split_text(text, encoding)), without building the parts when no character costs two units."""
    units = length_units(text, encoding)
    if units <= SINGLE[encoding]:
        return 1
    if _uniform(text, encoding):
        return -(-units // MULTI[encoding])
    return len(split_text(text, encoding))


def cut_text(text: str, encoding: Encoding) -> str:
    """The longest prefix that fits one message."""
    out: list[str] = []
    used = 0
    for ch in text:
        cost = _char_units(ch, encoding)
        if used + cost > SINGLE[encoding]:
            break
        out.append(ch)
        used += cost
    return "".join(out)


def choose_encoding(text: str, requested: Encoding | None = None) -> Encoding:
    """`requested` if the text fits it (else EncodingError); otherwise (auto) GSM7 when the text is all
    GSM 03.38, else UCS2 — never Latin-1 (whether a route may carry Latin-1 is decided at accept)."""
    if requested is not None:
        length_units(text, requested)
        return requested
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def air_encoding(encoding: Encoding, flash: bool) -> Encoding:
    """The encoding a message goes out in: a flash message cannot be Latin-1 (no class-0 Latin-1
    data_coding), so such a message goes as UCS-2, which carries every Latin-1 character."""
    return Encoding.UCS2 if flash and encoding is Encoding.LATIN1 else encoding


def data_coding(encoding: Encoding, flash: bool = False) -> int:
    """SMPP data_coding: 0 / 3 / 8, or for flash 0x10 / 0x18 (Latin-1 flash goes as UCS-2)."""
    if flash:
        return FLASH_DATA_CODING[air_encoding(encoding, flash)]
    return DATA_CODING[encoding]


def encode(text: str, encoding: Encoding) -> bytes:
    """GSM7 as unpacked septets (one per octet, ESC 0x1B before extension characters), Latin-1
    octets, or UTF-16-BE."""
    if encoding is Encoding.GSM7:
        if not is_gsm7(text):
            for ch in text:
                _char_units(ch, encoding)  # raises, naming the first character that is not GSM 03.38
        return text.translate(_SEPTETS).encode("latin-1")
    if encoding is Encoding.LATIN1:
        length_units(text, encoding)
        return text.encode("latin-1")
    return text.encode("utf-16-be", errors="surrogatepass")


def decode(data: bytes, encoding: Encoding) -> str:
    if encoding is Encoding.GSM7:
        out: list[str] = []
        escape = False
        for b in data:
            if escape:
                out.append(_EXT_CHAR.get(b, _BASIC_CHAR.get(b, " ")))
                escape = False
            elif b == 0x1B:
                escape = True
            else:
                out.append(_BASIC_CHAR.get(b & 0x7F, "?"))
        return "".join(out)
    if encoding is Encoding.LATIN1:
        return data.decode("latin-1")
    return data.decode("utf-16-be", errors="surrogatepass")


def decode_data_coding(data: bytes, data_coding: int) -> str:
    """The text of an incoming (MO) short message by its SMPP data_coding (with a message class, as
    0x10-0x1F and 0xF0-0xFF, by the alphabet bits: GSM-7, 8-bit (read as Latin-1) or UCS-2)."""
    if 0x10 <= data_coding <= 0x1F:
        data_coding = {0: 0, 2: 8}.get((data_coding >> 2) & 0x03, 4)
    elif data_coding >= 0xF0:
        data_coding = 4 if data_coding & 0x04 else 0
    if data_coding in (0, 1):
        if all(b < 0x80 for b in data):
            return decode(data, Encoding.GSM7)
        return data.decode("latin-1")
    if data_coding == 8:
        if len(data) % 2:
            data = data[:-1]
        return data.decode("utf-16-be", errors="replace")
    return data.decode("latin-1")


@dataclass(slots=True)
class Segmentation:
    encoding: Encoding
    segments: int  # billing count, as the contract's `Segments`
    parts: tuple[bytes, ...]  # encoded payload of each wire part
    texts: tuple[str, ...]


def segment(text: str, requested: Encoding | None = None,
            mode: LongMessageMode = LongMessageMode.SPLIT, flash: bool = False) -> Segmentation:
    """The parts that go on the air; `segments` counts them (what the contract's `Segments` bills)."""
    encoding = air_encoding(choose_encoding(text, requested), flash)
    if mode is LongMessageMode.CUT:
        cut = cut_text(text, encoding)
        return Segmentation(encoding, 1, (encode(cut, encoding),), (cut,))
    texts = split_text(text, encoding)
    if mode is LongMessageMode.PAYLOAD:
        return Segmentation(encoding, len(texts), (encode(text, encoding),), (text,))
    return Segmentation(encoding, len(texts), tuple(encode(t, encoding) for t in texts), tuple(texts))


def udh_concat(ref: int, total: int, seq: int) -> bytes:
    """The 6-byte concatenation UDH with an 8-bit reference."""
    return bytes((0x05, 0x00, 0x03, ref & 0xFF, total & 0xFF, seq & 0xFF))
