"""`_OneWrite`: uvicorn's request cycle writes a response's head and body as one write, without holding
back what must go at once (100 Continue) or what has no body to wait for (an answer to HEAD)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from app.api.http_limits import _OneWrite


@dataclass
class FakeTransport:
    writes: list[bytes] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append("write")

    def close(self) -> None:
        self.events.append("close")

    def write_eof(self) -> None:
        self.events.append("eof")

    def is_closing(self) -> bool:
        return False


@dataclass
class FakeCycle:
    response_started: bool = False
    completed: int = 0
    on_response: Any = None

    def __post_init__(self) -> None:
        self.on_response = self._done

    def _done(self) -> None:
        self.completed += 1


def wired() -> tuple[FakeTransport, FakeCycle, _OneWrite]:
    transport, cycle = FakeTransport(), FakeCycle()
    return transport, cycle, _OneWrite(cast(Any, transport), cast(Any, cycle))


def test_the_head_and_the_body_go_as_one_write() -> None:
    transport, cycle, out = wired()
    cycle.response_started = True
    out.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert transport.writes == []
    out.write(b"{}")
    cycle.on_response()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert cycle.completed == 1


def test_100_continue_goes_at_once_and_the_response_after_it_is_still_one_write() -> None:
    transport, cycle, out = wired()
    out.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # written by the cycle's receive(), before the response
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.response_started = True
    out.write(b"HEAD-BYTES")
    out.write(b"BODY")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HEAD-BYTES" + b"BODY"]


def test_a_response_without_a_body_write_sends_its_head_when_it_completes() -> None:
    transport, cycle, out = wired()
    cycle.response_started = True
    out.write(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n")  # an answer to HEAD: the body is never written
    assert transport.writes == []
    cycle.on_response()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"]
    assert cycle.completed == 1


def test_a_streamed_body_holds_only_the_head() -> None:
    transport, cycle, out = wired()
    cycle.response_started = True
    out.write(b"H")
    out.write(b"chunk1")
    out.write(b"chunk2")
    assert transport.writes == [b"Hchunk1", b"chunk2"]


def test_closing_or_half_closing_sends_a_held_head_first() -> None:
    transport, cycle, out = wired()
    cycle.response_started = True
    out.write(b"H")
    out.close()
    assert transport.events == ["write", "close"] and transport.writes == [b"H"]
    transport, cycle, out = wired()
    cycle.response_started = True
    out.write(b"H")
    out.write_eof()
    assert transport.events == ["write", "eof"]


def test_everything_else_is_the_transport_s_own() -> None:
    _transport, _cycle, out = wired()
    assert out.is_closing() is False
