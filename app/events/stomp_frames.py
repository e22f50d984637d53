"""STOMP 1.2 frames, both ways: the one codec of the outbox's broker client (stomp_client.py) and of the
embedded broker `make run` uses (dev_broker.py).

A frame is COMMAND, header lines, a blank line, the body and a NUL. Header names and values escape
`\\`, CR, LF and `:` (`\\\\`, `\\r`, `\\n`, `\\c`) except in CONNECT, STOMP and CONNECTED frames, which
STOMP 1.2 leaves unescaped. A body is delimited by `content-length` when the frame has one, else by the
first NUL (our SEND frames carry no content-length, so ActiveMQ hands JMS consumers a TextMessage).
"""

from __future__ import annotations

import re

Frame = tuple[str, dict[str, str], bytes]
RAW_HEADERS = frozenset({"CONNECT", "STOMP", "CONNECTED"})

_UNESCAPES = {"\\\\": "\\", "\\r": "\r", "\\n": "\n", "\\c": ":"}
_ESCAPED = re.compile(r"\\[\\rnc]")
# The blank line that ends a head: EOL is LF or CR LF (STOMP 1.2), so any of four spellings.
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


def unescape(value: str) -> str:
    if "\\" not in value:
        return value
    if value.count("\\") == value.count("\\c"):  # only escaped colons (ids such as report:SM…): no `\\\\`
        return value.replace("\\c", ":")
    return _ESCAPED.sub(_unescaped, value)


def _unescaped(m: re.Match[str]) -> str:
    return _UNESCAPES[m.group(0)]


def encode_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    if command in RAW_HEADERS:
        head = "".join(f"{k}:{v}\n" for k, v in headers.items())
    else:
        head = "".join(f"{escape(k)}:{escape(v)}\n" for k, v in headers.items())
    return f"{command}\n{head}\n".encode() + body + b"\x00"


def parse_frames(buffer: bytearray) -> list[Frame]:
    """Remove and return every complete frame at the front of `buffer` (heart-beat EOLs skipped)."""
    frames: list[Frame] = []
    while True:
        while bytes(buffer[:1]) in (b"\n", b"\r"):
            del buffer[:1]
        # The first blank line, found in one pass that stops there: a read of a thousand frames used to
        # search all of it again for each one (a CR LF separator first, then LF).
        blank = _BLANK_LINE.search(buffer)
        if blank is None:
            return frames
        head_end, start = blank.span()
        lines = buffer[:head_end].decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
        command = lines[0].strip()
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if command in RAW_HEADERS:
                headers.setdefault(k, v)
            else:
                headers.setdefault(unescape(k), unescape(v))
        if "content-length" in headers and headers["content-length"].strip().isdigit():
            n = int(headers["content-length"])
            if len(buffer) < start + n + 1:
                return frames
            body, stop = bytes(buffer[start:start + n]), start + n + 1
        else:
            nul = buffer.find(b"\x00", start)
            if nul == -1:
                return frames
            body, stop = bytes(buffer[start:nul]), nul + 1
        del buffer[:stop]
        frames.append((command, headers, body))
