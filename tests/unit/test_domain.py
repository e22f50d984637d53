"""Pure domain rules: statuses, upstream id normalisation, phone numbers, senders, routing."""

from __future__ import annotations

import pytest

from app.domain.ids import alternate_upstream_ids, new_message_sid, normalise_upstream_id, receipt_id_candidates
from app.domain.phone import PhoneError, normalise_e164, split_recipients, validate_sender
from app.domain.routing import Route, backoff_seconds, providers_for
from app.domain.status import Status, advances, aggregate_parts, report_delivery_status

S = Status


@pytest.mark.parametrize(("current", "new", "expected"), [
    (S.QUEUED, S.SENDING, True), (S.SENDING, S.SENT, True), (S.SENT, S.DELIVERED, True),
    (S.SENT, S.SENT, False), (S.DELIVERED, S.SENT, False), (S.DELIVERED, S.FAILED, False),
    (S.FAILED, S.DELIVERED, False), (S.SCHEDULED, S.QUEUED, True), (S.CANCELED, S.SENT, False),
    (S.SENT, S.UNDELIVERED, True), (S.SENDING, S.DELIVERED, True),
])
def test_status_only_moves_forward(current: Status, new: Status, expected: bool) -> None:
    assert advances(current, new) is expected


@pytest.mark.parametrize(("parts", "expected"), [
    ([S.DELIVERED, S.DELIVERED], S.DELIVERED),
    ([S.DELIVERED, S.SENT], S.SENT),
    ([S.DELIVERED, S.UNDELIVERED], S.UNDELIVERED),
    ([S.SENT, S.FAILED], S.FAILED),
    ([S.UNDELIVERED, S.FAILED], S.FAILED),
    ([S.SENT], S.SENT),
])
def test_long_message_status_from_parts(parts: list[Status], expected: Status) -> None:
    assert aggregate_parts(parts) is expected


def test_report_words() -> None:
    assert report_delivery_status(S.DELIVERED) == "DELIVERED"
    assert report_delivery_status(S.UNDELIVERED) == "FAILED"
    assert report_delivery_status(S.FAILED) == "FAILED"


def test_message_sid_shape() -> None:
    sid = new_message_sid()
    assert sid.startswith("SM") and len(sid) == 34 and sid != new_message_sid()


@pytest.mark.parametrize(("raw", "norm", "alts"), [
    ("0001A2B", "1a2b", ["6699"]),
    ("6699", "6699", ["1a2b", "26265"]),
    ("  abc-DEF ", "abc-def", []),
    ("000", "0", []),
    ("alss-a1b2c3d4-e5f67890", "alss-a1b2c3d4-e5f67890", []),
])
def test_upstream_id_normalisation(raw: str, norm: str, alts: list[str]) -> None:
    assert normalise_upstream_id(raw) == norm
    assert alternate_upstream_ids(raw) == alts


@pytest.mark.parametrize(("raw", "id_format", "candidates"), [
    ("6699", "same", ["6699"]), ("0001A2B", "same", ["1a2b"]),
    ("1a2b", "hex", ["6699"]), ("6699", "decimal", ["1a2b"]),  # receipt base -> the submit response's
    ("6699", "auto", ["6699", "1a2b", "26265"]), ("abc-1", "hex", ["abc-1"]), ("x1", "decimal", ["x1"]),
])
def test_receipt_id_candidates_follow_the_provider_format(raw: str, id_format: str, candidates: list[str]) -> None:
    assert receipt_id_candidates(raw, id_format) == candidates


@pytest.mark.parametrize(("raw", "expected"), [
    ("+96170123456", "+96170123456"), ("96170123456", "+96170123456"), ("+1 (415) 555-0100", "+14155550100"),
    ("4915112345678", "+4915112345678"), ("+447700900123", "+447700900123"), ("+70123456", "+70123456"),
])
def test_e164(raw: str, expected: str) -> None:
    assert normalise_e164(raw) == expected


@pytest.mark.parametrize("raw", ["", "12", "+1415abc0100", "+1234567890123456", "hello", "+"])
def test_e164_rejects(raw: str) -> None:
    with pytest.raises(PhoneError):
        normalise_e164(raw)


def test_national_numbers_with_a_default_region() -> None:
    assert normalise_e164("070123456", "LB") == "+96170123456"
    assert normalise_e164("70123456", "LB") == "+96170123456"
    assert normalise_e164("96170123456", "LB") == "+96170123456"  # international without + still works


@pytest.mark.parametrize("raw", ["70123456", "0123456789", "447700900123"])
def test_without_plus_or_default_region_only_valid_international_numbers(raw: str) -> None:
    """A Lebanese local 70123456 is not silently sent to +70123456 (issue #17.6)."""
    with pytest.raises(PhoneError, match=r"leading \+ .*SMSGW_DEFAULT_COUNTRY"):
        normalise_e164(raw)


def test_recipients_split() -> None:
    assert split_recipients("+1, +2 ,,+3") == ["+1", "+2", "+3"]
    assert split_recipients(["+1", " ", "+2"]) == ["+1", "+2"]


@pytest.mark.parametrize("ok", ["Acme", "ACME Bank", "123456789012345", "+12345", "A-B_C.D&E"])
def test_sender_accepted(ok: str) -> None:
    assert validate_sender(ok) == ok


@pytest.mark.parametrize("bad", ["1234567890123456", "TwelveChars1", "Ünïcode", "a/b", " "])
def test_sender_refused(bad: str) -> None:
    with pytest.raises(PhoneError):
        validate_sender(bad)


def test_routing_longest_prefix_and_channel() -> None:
    routes = [Route("smpp", "", ("main",)), Route("smpp", "+961", ("ams",)), Route("smpp", "+9617", ("ams7",)),
              Route("http", "", ("commpeak", "bulk"))]
    assert providers_for(routes, "smpp", "+96170000000") == ("ams7",)
    assert providers_for(routes, "smpp", "+96110000000") == ("ams",)
    assert providers_for(routes, "smpp", "+14155550100") == ("main",)
    assert providers_for(routes, "http", "+96170000000") == ("commpeak", "bulk")
    assert providers_for(routes, "none", "+1") == ()


def test_backoff_grows_and_caps() -> None:
    assert backoff_seconds(1, 2, 600, 1.0) == 2
    assert backoff_seconds(4, 2, 600, 1.0) == 16
    assert backoff_seconds(30, 2, 600, 1.0) == 600
    assert backoff_seconds(4, 2, 600, 0.0) == 8
