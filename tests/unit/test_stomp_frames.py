"""The STOMP 1.2 frame codec: a head ends at its first blank line however its EOLs are spelled, header
escapes come back exactly, and a read of many frames gives them all, in order."""

from __future__ import annotations

import pytest

from app.events.stomp_frames import encode_frame, escape, parse_frames, unescape


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("blank", ["\n", "\r\n"])
def test_a_head_ends_at_the_first_blank_line_whatever_its_eols(eol: str, blank: str) -> None:
    frame = f"MESSAGE{eol}destination:/queue/a{eol}message-id:7{eol}{blank}body\n\nwith blank lines\x00".encode()
    buf = bytearray(frame + b"\n")  # and a heart-beat after it
    assert parse_frames(buf) == [("MESSAGE", {"destination": "/queue/a", "message-id": "7"},
                                  b"body\n\nwith blank lines")]
    assert parse_frames(buf) == [] and buf == b""


@pytest.mark.parametrize("value", ["report:SM0123", "a\\b", "a\\cb", "\\", "line\nbreak\r:", "::", "\\c:\\\\c",
                                   "plain"])
def test_a_header_value_comes_back_as_it_was_sent(value: str) -> None:
    assert unescape(escape(value)) == value
    buf = bytearray(encode_frame("SEND", {"smsgw-report-id": value, "destination": "/queue/x"}, b"{}"))
    assert parse_frames(buf) == [("SEND", {"smsgw-report-id": value, "destination": "/queue/x"}, b"{}")]


def test_only_the_four_escapes_are_undone() -> None:
    assert unescape("report\\cSM1") == "report:SM1"
    assert unescape("\\\\c") == "\\c"  # an escaped backslash, then a c
    assert unescape("\\n\\r\\\\\\c") == "\n\r\\:"


def test_a_read_of_a_thousand_frames_gives_each_once_in_order_and_keeps_the_partial_one() -> None:
    frames = b"".join(encode_frame("MESSAGE", {"destination": "/queue/r", "id": str(i)}, b'{"n":%d}' % i)
                      for i in range(1000))
    buf = bytearray(frames + b"MESSAGE\ndestination:/queue/r\n\n{\"n\":")  # the next frame, cut short
    got = parse_frames(buf)
    assert [h["id"] for _, h, _ in got] == [str(i) for i in range(1000)]
    assert got[999][2] == b'{"n":999}'
    assert buf == b"MESSAGE\ndestination:/queue/r\n\n{\"n\":"
    buf += b"1000}\x00"
    assert parse_frames(buf) == [("MESSAGE", {"destination": "/queue/r"}, b'{"n":1000}')]


def test_a_content_length_body_may_hold_nuls() -> None:
    buf = bytearray(b"MESSAGE\r\ncontent-length:3\r\n\r\na\x00b\x00")
    assert parse_frames(buf) == [("MESSAGE", {"content-length": "3"}, b"a\x00b")]
