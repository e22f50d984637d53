"""Receipt parsing: the text forms SMSCs send, TLV-only receipts, vendor TLVs of seed 004."""

from __future__ import annotations

import random

import pytest

from app.domain.status import Status
from app.providers.smpp import receipt_parse
from app.providers.smpp.receipt_parse import DeliverKind, deliver_kind, is_receipt, parse_receipt
from app.providers.smpp.submit import relative_validity


@pytest.mark.parametrize(("text", "uid", "stat", "status", "err"), [
    ("id:854019 sub:001 dlvrd:001 submit date:1108202241 done date:1108202241 stat:DELIVRD err:000",
     "854019", "DELIVRD", Status.DELIVERED, None),
    ("id:1a2b sub:001 dlvrd:000 submit date:2611221200 done date:2611221201 stat:UNDELIV err:001 text:hello",
     "1a2b", "UNDELIV", Status.UNDELIVERED, "001"),
    ("ID:77 SUB:1 DLVRD:0 SUBMIT DATE:2611221200 DONE DATE:2611221201 STAT:REJECTD ERR:011 Text:x",
     "77", "REJECTD", Status.FAILED, "011"),
    ("id:5 stat:EXPIRED", "5", "EXPIRED", Status.UNDELIVERED, None),
    ("id:6 stat:ACCEPTD err:0", "6", "ACCEPTD", Status.SENT, None),
])
def test_text_receipts(text: str, uid: str, stat: str, status: Status, err: str | None) -> None:
    r = parse_receipt(text.encode(), {})
    assert r is not None
    assert (r.upstream_id, r.stat, r.status) == (uid, stat, status)
    if err is not None:
        assert r.error_code == err


def test_tlvs_win_and_fill_gaps_and_vendor_tlvs_are_kept() -> None:
    tlvs = {0x001E: b"ABC123\x00", 0x0427: bytes([5]), 0x0423: bytes([3, 0, 11]),
            0x2000: b" 0.0500\x00", 0x2001: b"\x00\x01", 0x2002: b"\x00\x02", 0x2003: b"25001\x00",
            0x2004: b"\x00\x02"}
    r = parse_receipt(b"", tlvs)
    assert r is not None
    assert (r.upstream_id, r.stat, r.status, r.error_code) == ("ABC123", "UNDELIV", Status.UNDELIVERED, "11")
    assert r.extra["tlvs"] == {"cost": "0.0500", "flags": 1, "parts": 2, "mccmnc": "25001", "additional_status": 2}


def test_no_id_is_not_a_receipt_we_can_match() -> None:
    assert parse_receipt(b"stat:DELIVRD", {}) is None


@pytest.mark.parametrize(("esm_class", "kind", "status_report"), [
    (0x00, DeliverKind.MO, False), (0x40, DeliverKind.MO, False), (0x80, DeliverKind.MO, False),
    (0x04, DeliverKind.RECEIPT, True), (0x44, DeliverKind.RECEIPT, True), (0x08, DeliverKind.SME_ACK, True),
    (0x10, DeliverKind.USER_ACK, True), (0x18, DeliverKind.CONVERSATION_ABORT, False),
    (0x20, DeliverKind.INTERMEDIATE, True), (0x0C, DeliverKind.RESERVED, False), (0x24, DeliverKind.RESERVED, False),
    (0x3C, DeliverKind.RESERVED, False),
])
def test_esm_class_message_type_is_a_number_not_flags(esm_class: int, kind: DeliverKind, status_report: bool) -> None:
    assert deliver_kind(esm_class) is kind and is_receipt(esm_class) is status_report


def test_default_stat_stands_in_only_when_nothing_says_one() -> None:
    ack = parse_receipt(b"", {0x001E: b"77\x00"}, "DELIVRD")
    assert ack is not None and (ack.stat, ack.status) == ("DELIVRD", Status.DELIVERED)
    undeliv = parse_receipt(b"", {0x001E: b"77\x00", 0x0427: bytes([5])}, "DELIVRD")
    assert undeliv is not None and undeliv.status is Status.UNDELIVERED


def test_relative_validity() -> None:
    assert relative_validity(3600) == "000000010000000R"
    assert relative_validity(90061) == "000001010101000R"


def _by_pattern(text: str) -> dict[str, str]:
    """The general parse alone (what parse_receipt_text did before its standard-layout shortcut)."""
    return {m.group(1).lower(): m.group(2).strip() for m in receipt_parse._FIELD.finditer(text)}


def test_the_standard_layout_shortcut_reads_what_the_general_parse_reads() -> None:
    """The shortcut for the appendix's layout gives the general parse's fields for every text, standard
    or not: empty values, a name inside a value, a text with colons, other spacing, other case."""
    rng = random.Random(7)
    atoms = ["id:", "ID:", "sub:", "dlvrd:", "submit date:", "Submit Date:", "done date:", "stat:", "err:", "text:",
             "x", "ab", " ", "  ", "\n", "\t", ":", "0", "DELIVRD", "a b", "é", "id", "text"]
    values = ["", "x", "0a", "ID:", "é", "1:2", "sub:", "x\n"]
    shortcut = 0
    for _ in range(40_000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 20)))
        if rng.random() < 0.5:
            fields = " ".join(f"{name}:{rng.choice(values)}" for name in
                              ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err"))
            text = fields + rng.choice(["", " text:" + text, " text:", " text:ab cd ", " text:x id:1", " text: \n"])
        shortcut += receipt_parse._STANDARD.fullmatch(text) is not None
        assert receipt_parse.parse_receipt_text(text) == _by_pattern(text), repr(text)
    assert shortcut > 1_000  # the shortcut was taken, not only the general parse


def test_a_standard_receipt_takes_the_shortcut() -> None:
    text = "id:0a1b sub:001 dlvrd:001 submit date:2612012130 done date:2612012131 stat:DELIVRD err:000 text:Hello"
    assert receipt_parse._STANDARD.fullmatch(text) is not None
    assert receipt_parse.parse_receipt_text(text) == {
        "id": "0a1b", "sub": "001", "dlvrd": "001", "submit date": "2612012130", "done date": "2612012131",
        "stat": "DELIVRD", "err": "000", "text": "Hello"}
