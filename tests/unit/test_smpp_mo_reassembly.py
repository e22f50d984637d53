"""MO reassembly: concatenated inbound parts are held by sender and reference and joined in sequence order."""

from __future__ import annotations

from app.providers.smpp.mo_reassembly import MoReassembly
from app.providers.smpp.pdu import ConcatInfo


def part(reference: int, total: int, sequence: int, via: str = "udh") -> ConcatInfo:
    return ConcatInfo(reference=reference, total=total, sequence=sequence, via=via)


def test_a_message_in_one_part_passes_through_at_once() -> None:
    mo = MoReassembly()
    assert mo.add("96170123456", None, "hello") == "hello"
    assert mo.add("96170123456", part(7, 1, 1), "hello") == "hello"
    assert len(mo) == 0


def test_parts_arriving_out_of_order_are_joined_in_sequence_order_once_the_last_arrives() -> None:
    mo = MoReassembly()
    assert mo.add("96170123456", part(7, 3, 3, "sar"), "three") is None
    assert mo.add("96170123456", part(7, 3, 1, "sar"), "one ") is None
    assert len(mo) == 1
    assert mo.add("96170123456", part(7, 3, 2, "sar"), "two ") == "one two three"
    assert len(mo) == 0  # nothing left held


def test_the_same_reference_from_two_senders_is_two_messages() -> None:
    mo = MoReassembly()
    assert mo.add("111111111", part(9, 2, 1), "a1 ") is None
    assert mo.add("222222222", part(9, 2, 1), "b1 ") is None
    assert mo.add("222222222", part(9, 2, 2), "b2") == "b1 b2"
    assert mo.add("111111111", part(9, 2, 2), "a2") == "a1 a2"


def test_a_part_older_than_the_ttl_is_forgotten_and_its_message_starts_again() -> None:
    now = [1000.0]
    mo = MoReassembly(ttl=300.0, clock=lambda: now[0])
    assert mo.add("96170123456", part(5, 2, 1), "stale ") is None
    now[0] += 301.0
    assert mo.add("96170123456", part(5, 2, 2), "late") is None  # part 1 expired: this one waits alone
    assert mo.add("96170123456", part(5, 2, 1), "fresh ") == "fresh late"
