"""Encoding choice and segmentation: the contract's boundaries, table-driven, plus properties."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.encoding import (
    GSM_BASIC,
    GSM_EXT,
    MULTI,
    SINGLE,
    Encoding,
    EncodingError,
    LongMessageMode,
    choose_encoding,
    count_segments,
    cut_text,
    data_coding,
    decode,
    decode_data_coding,
    encode,
    length_units,
    parse_requested_encoding,
    segment,
    split_text,
    udh_concat,
)

G, L, U = Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2


@pytest.mark.parametrize(("text", "encoding", "segments"), [
    ("a" * 160, G, 1), ("a" * 161, G, 2), ("a" * 306, G, 2), ("a" * 307, G, 3),
    ("€" * 80, G, 1), ("€" * 81, G, 2), ("a" * 158 + "€", G, 1), ("a" * 159 + "€", G, 2),
    ("©" * 70, U, 1), ("©" * 71, U, 2), ("ç" * 134, U, 2), ("áíóúâê\u00a0`" * 10, U, 2), ("[" * 81, G, 2),
    ("Привет" * 11 + "Прив", U, 1), ("ж" * 70, U, 1), ("ж" * 71, U, 2), ("ж" * 134, U, 2), ("ж" * 135, U, 3),
    ("😀" * 35, U, 1), ("😀" * 36, U, 2), ("مرحبا بك", U, 1), ("", G, 1), ("Hello {world} ~", G, 1),
])
def test_auto_encoding_and_segments(text: str, encoding: Encoding, segments: int) -> None:
    chosen = choose_encoding(text)
    assert chosen is encoding
    assert count_segments(text, chosen) == segments


@pytest.mark.parametrize(("text", "segments"), [
    ("©" * 140, 1), ("©" * 141, 2), ("©" * 268, 2), ("©" * 269, 3)])
def test_latin1_sizes_when_asked_for(text: str, segments: int) -> None:
    assert choose_encoding(text, L) is L and count_segments(text, L) == segments


@pytest.mark.parametrize(("encoding", "flash", "dc"), [
    (G, False, 0), (L, False, 3), (U, False, 8), (G, True, 0x10), (U, True, 0x18), (L, True, 0x18)])
def test_data_coding_flash_is_class_0_gsm7_or_ucs2(encoding: Encoding, flash: bool, dc: int) -> None:
    assert data_coding(encoding, flash) == dc


def test_latin1_flash_goes_on_the_air_as_ucs2() -> None:
    seg = segment("ça va", L, flash=True)
    assert seg.encoding is U and seg.parts == ("ça va".encode("utf-16-be"),)
    assert segment("ça va", L).encoding is L


def test_extension_escape_is_never_split() -> None:
    parts = split_text("a" * 152 + "€" + "b" * 10, G)
    assert parts[0] == "a" * 152 and parts[1].startswith("€")
    assert all(length_units(p, G) <= 153 for p in parts)


def test_surrogate_pair_is_never_split() -> None:
    parts = split_text("a" * 66 + "😀" + "b" * 10, U)
    assert parts[0] == "a" * 66 and parts[1].startswith("😀")


def test_explicit_encoding_that_cannot_carry_the_text() -> None:
    with pytest.raises(EncodingError, match="GSM"):
        choose_encoding("Привет", G)
    with pytest.raises(EncodingError, match="Latin-1"):
        choose_encoding("Привет", L)
    assert choose_encoding("hello", U) is U


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("auto", None), ("GSM7", G), ("latin1", L), ("ucs2", U)])
def test_parse_requested(raw: str | None, expected: Encoding | None) -> None:
    assert parse_requested_encoding(raw) is expected


def test_parse_requested_rejects_unknown() -> None:
    with pytest.raises(EncodingError):
        parse_requested_encoding("ebcdic")


def test_gsm_wire_bytes() -> None:
    assert encode("@A€", G) == bytes([0x00, 0x41, 0x1B, 0x65])
    assert decode(bytes([0x00, 0x41, 0x1B, 0x65]), G) == "@A€"


def test_gsm_septets_of_every_character() -> None:
    # A character's septet is its position in GSM_BASIC; an extension character is ESC and its code.
    basic = [c for c in GSM_BASIC if c != "\x1b"]
    assert encode("".join(basic), G) == bytes(GSM_BASIC.index(c) for c in basic)
    assert encode("".join(GSM_EXT), G) == b"".join(bytes((0x1B, code)) for code in GSM_EXT.values())
    assert encode("a{b", G) == bytes([0x61, 0x1B, 0x28, 0x62])
    assert length_units("a{b", G) == 4 and length_units("ab", G) == 2


@pytest.mark.parametrize("text", ["façade", "naïve ok", "\x1b", "x\u20acy\u0660"])
def test_gsm_encode_refuses_what_is_not_gsm(text: str) -> None:
    first = next(ch for ch in text if ch not in GSM_BASIC.replace("\x1b", "") and ch not in GSM_EXT)
    with pytest.raises(EncodingError, match=f"U\\+{ord(first):04X}"):
        encode(text, G)


def test_cut_and_payload_modes() -> None:
    text = "x" * 200
    cut = segment(text, mode=LongMessageMode.CUT)
    assert cut.segments == 1 and cut.texts == ("x" * 160,) and len(cut.parts) == 1
    payload = segment(text, mode=LongMessageMode.PAYLOAD)
    assert payload.segments == 2 and payload.parts == (encode(text, G),)
    split = segment(text)
    assert split.segments == 2 and [len(p) for p in split.parts] == [153, 47]
    assert cut_text("€" * 100, G) == "€" * 80


def test_udh() -> None:
    assert udh_concat(0x1F, 3, 2) == bytes.fromhex("0500031f0302")


def test_mo_decoding() -> None:
    assert decode_data_coding(encode("Hi €", G), 0) == "Hi €"
    assert decode_data_coding("é".encode("latin-1"), 3) == "é"
    assert decode_data_coding("مرحبا".encode("utf-16-be"), 8) == "مرحبا"
    assert decode_data_coding("ça".encode("utf-16-be"), 0x18) == "ça"  # flash UCS-2
    assert decode_data_coding(encode("Hi", G), 0x10) == decode_data_coding(encode("Hi", G), 0xF0) == "Hi"


gsm_text = st.text(alphabet=st.sampled_from([c for c in GSM_BASIC if c != "\x1b"] + list(GSM_EXT)), max_size=500)
latin_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=500)
# A category name is a Literal; through characters()'s decorators a bare ("Cs",) would be tuple[str].
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
any_text = st.text(alphabet=st.characters(blacklist_categories=SURROGATES), max_size=300)


@given(gsm_text)
def test_gsm_round_trip_and_sizes(text: str) -> None:
    assert decode(encode(text, G), G) == text
    parts = split_text(text, G)
    assert "".join(parts) == text and count_segments(text, G) == len(parts)
    limit = SINGLE[G] if len(parts) == 1 else MULTI[G]
    assert all(length_units(p, G) <= limit for p in parts)


@given(latin_text)
def test_latin1_round_trip(text: str) -> None:
    assert decode(encode(text, L), L) == text
    assert "".join(split_text(text, L)) == text


@given(latin_text)
def test_auto_never_picks_latin1(text: str) -> None:
    chosen = choose_encoding(text)
    assert chosen is (G if all(c in GSM_BASIC or c in GSM_EXT for c in text) else U)
    assert segment(text).encoding is chosen


@given(any_text)
def test_ucs2_round_trip_and_auto_never_fails(text: str) -> None:
    assert decode(encode(text, U), U) == text
    chosen = choose_encoding(text)
    seg = segment(text)
    assert seg.encoding is chosen and seg.segments == count_segments(text, chosen)
    assert "".join(seg.texts) == text
    assert all(decode(p, chosen) == t for p, t in zip(seg.parts, seg.texts, strict=True))


def _units_per_character(text: str, encoding: Encoding) -> int:
    """The definition, one character at a time: what the C-level fast paths must equal."""
    total = 0
    for ch in text:
        if encoding is G:
            if ch not in GSM_BASIC.replace("\x1b", "") and ch not in GSM_EXT:
                raise EncodingError(ch)
            total += 2 if ch in GSM_EXT else 1
        elif encoding is L:
            if ord(ch) > 0xFF:
                raise EncodingError(ch)
            total += 1
        else:
            total += 2 if ord(ch) > 0xFFFF else 1
    return total


_MIXED_TEXT = st.text(alphabet=st.one_of(
    st.sampled_from(GSM_BASIC.replace("\x1b", "")), st.sampled_from(list(GSM_EXT)),
    st.characters(max_codepoint=0xFF), st.characters(min_codepoint=0x100, max_codepoint=0xFFFF),
    st.characters(min_codepoint=0x10000), st.sampled_from(["\ud800", "\udfff"])), max_size=400)


@given(_MIXED_TEXT, st.sampled_from([G, L, U]))
def test_length_and_part_count_fast_paths_equal_the_per_character_definition(text: str, encoding: Encoding) -> None:
    try:
        expected = _units_per_character(text, encoding)
    except EncodingError:
        with pytest.raises(EncodingError):
            length_units(text, encoding)
        with pytest.raises(EncodingError):
            count_segments(text, encoding)
        return
    assert length_units(text, encoding) == expected
    assert count_segments(text, encoding) == len(split_text(text, encoding))
