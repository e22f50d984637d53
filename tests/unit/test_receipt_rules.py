"""The receipt-apply rules (app/services/receipt_rules.decide) on plain values: no database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import orjson

from app.domain.ids import UpstreamId
from app.domain.messages import Receipt
from app.domain.status import Status
from app.services.receipt_rules import MessageState, PartState, decide
from app.services.status_change import Recipient

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def _receipt(uid: str, status: Status, code: str = "DELIVRD", **kw: object) -> Receipt:
    return Receipt(provider="smsc-main", upstream_id=UpstreamId(uid), status=status, provider_status_code=code,
                   source="smpp:smsc-main", **kw)  # type: ignore[arg-type]


def _message(sid: str, parts: int, callback: str | None = None) -> tuple[MessageState, list[PartState]]:
    msg = MessageState(sid, Status.SENT, Recipient(sid, "smpp", "+96170123456", "Acme", "smsc-main", callback),
                       None, None)
    return msg, [PartState(next(_ids), sid, Status.SENT, next_poll_at=NOW) for _ in range(parts)]


def test_a_long_message_is_delivered_when_its_last_part_is_and_reported_once() -> None:
    msg, parts = _message("SM1", 3)
    receipts = [(_receipt(f"id{i}", Status.DELIVERED), [p]) for i, p in enumerate(parts)]
    out = decide(receipts, [], {"SM1": msg}, {"SM1": parts}, now=NOW, report_queue="delivery-report")
    assert [h["applied"] for h in out.history] == [False, False]  # parts 1 and 2 leave it `sent`
    # the final entry is the message row's own (no history row): when, who said so, and what
    assert (msg.done_at, msg.done_source, msg.done_detail) == (NOW, "smpp:smsc-main", None)
    assert msg.status is Status.DELIVERED and out.finals == ["SM1"]
    assert [r["kind"] for r in out.outbox] == ["report"]
    assert orjson.loads(out.outbox[0]["body"])["DeliveryStatus"] == "DELIVERED"
    assert set(out.parts) == {p.id for p in parts} and all(p.done_at == NOW and p.next_poll_at is None for p in parts)
    assert out.messages["SM1"].row()["status"] == "delivered"
    assert out.counts == {(Status.DELIVERED, "smsc-main"): 1}


def test_one_undelivered_part_fails_the_message_with_its_code() -> None:
    msg, parts = _message("SM2", 2)
    out = decide([(_receipt("a", Status.UNDELIVERED, "UNDELIV", error_code="0x0B"), [parts[0]])], [],
                 {"SM2": msg}, {"SM2": parts}, now=NOW, report_queue="dr")
    body = orjson.loads(out.outbox[0]["body"])
    assert msg.status is Status.UNDELIVERED and body["ProviderStatusCode"] == "UNDELIV"
    assert body["DeliveryStatus"] == "FAILED" and msg.error_code == "0x0B"


def test_a_duplicate_receipt_is_history_only() -> None:
    msg, parts = _message("SM3", 1)
    first = decide([(_receipt("a", Status.DELIVERED), parts)], [], {"SM3": msg}, {"SM3": parts}, now=NOW,
                   report_queue="dr")
    again = decide([(_receipt("a", Status.DELIVERED), parts)], [], {"SM3": msg}, {"SM3": parts}, now=NOW,
                   report_queue="dr")
    assert len(first.outbox) == 1
    assert again.outbox == [] and again.messages == {} and again.parts == {}
    assert [h["applied"] for h in again.history] == [False]


def test_a_late_enroute_never_moves_a_delivered_part_back() -> None:
    msg, parts = _message("SM4", 1)
    out = decide([(_receipt("a", Status.DELIVERED), parts), (_receipt("a", Status.SENT, "ENROUTE"), parts)], [],
                 {"SM4": msg}, {"SM4": parts}, now=NOW, report_queue="dr")
    assert parts[0].status is Status.DELIVERED and msg.status is Status.DELIVERED
    assert [h["applied"] for h in out.history] == [False] and msg.done_at == NOW  # the first: the row's own


def test_vendor_tlvs_are_merged_into_the_part() -> None:
    msg, parts = _message("SM5", 1)
    parts[0].tlvs = {"0x2000": "01"}
    decide([(_receipt("a", Status.DELIVERED, extra={"0x2001": "02"}), parts)], [], {"SM5": msg}, {"SM5": parts},
           now=NOW, report_queue="dr")
    assert parts[0].tlvs == {"0x2000": "01", "0x2001": "02"}


def test_a_report_naming_our_message_sid_applies_its_status_directly_with_a_callback() -> None:
    msg, _ = _message("SM6", 0, callback="https://crm.example/cb")
    r = Receipt(provider=None, upstream_id=UpstreamId("SM6"), status=Status.FAILED, provider_status_code="30008",
                source="webhook", error_code="30008")
    out = decide([], [("SM6", r)], {"SM6": msg}, {"SM6": []}, now=NOW, report_queue="dr")
    assert [o["kind"] for o in out.outbox] == ["report", "callback"]
    assert out.messages["SM6"].row()["lease_owner"] is None and msg.error_code == "30008"


def test_delivered_keeps_no_error_code() -> None:
    msg, parts = _message("SM7", 1)
    decide([(_receipt("a", Status.DELIVERED, error_code="000"), parts)], [], {"SM7": msg}, {"SM7": parts},
           now=NOW, report_queue="dr")
    assert msg.error_code is None and parts[0].error_code == "000"


def test_a_one_part_message_keeps_its_receipt_on_the_message_row_only() -> None:
    msg = MessageState("SM8", Status.SENT, Recipient("SM8", "smpp", "+96170123456", None, "smsc-main", None),
                       None, None)
    part = PartState(next(_ids), "SM8", Status.SENT)  # not polled
    text = {"receipt": {"id": "a", "stat": "DELIVRD", "err": "000"}}  # what the message row says already
    out = decide([(_receipt("a", Status.DELIVERED, error_code="000", extra=text), [part])], [], {"SM8": msg},
                 {"SM8": [part]}, now=NOW, report_queue="dr")
    assert out.parts == {} and out.history == []  # one row version: the message's
    row = out.messages["SM8"].row()
    assert (row["status"], row["provider_status_code"], row["done_at"], row["done_detail"]) == (
        "delivered", "DELIVRD", NOW, "err 000")


def test_a_one_part_message_still_writes_its_part_when_polled_or_given_tlvs() -> None:
    polled, _ = _message("SM9", 1)
    parts = [PartState(next(_ids), "SM9", Status.SENT, next_poll_at=NOW)]
    out = decide([(_receipt("a", Status.DELIVERED), parts)], [], {"SM9": polled}, {"SM9": parts}, now=NOW,
                 report_queue="dr")
    assert set(out.parts) == {parts[0].id} and parts[0].next_poll_at is None  # the poller stops asking
    msg, _ = _message("SM10", 1)
    plain = [PartState(next(_ids), "SM10", Status.SENT)]
    tlvs = {"tlvs": {"mccmnc": "25001"}, "receipt": {"stat": "DELIVRD"}}
    out = decide([(_receipt("a", Status.DELIVERED, extra=tlvs), plain)], [], {"SM10": msg},
                 {"SM10": plain}, now=NOW, report_queue="dr")
    assert set(out.parts) == {plain[0].id} and plain[0].tlvs == tlvs


def test_a_report_that_changes_nothing_or_not_to_its_own_status_is_a_history_row() -> None:
    msg, parts = _message("SM11", 2)
    out = decide([(_receipt("a", Status.SENT, "ENROUTE"), [parts[0]])], [], {"SM11": msg}, {"SM11": parts},
                 now=NOW, report_queue="dr")
    assert [(h["status"], h["applied"]) for h in out.history] == [("sent", False)] and msg.done_at is None
