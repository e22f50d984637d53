"""What a status change writes (app/services/status_change.py), without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs

import orjson
import pytest

from app.domain.status import Status
from app.services.status_change import Recipient, history_row, outbox_rows

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PLAIN = Recipient("SM1", "smpp", "+96170123456", "Acme", "smsc-main", None)
WITH_CALLBACK = Recipient("SM2", "http", "+96170123456", None, "commpeak", "https://crm.example/cb")


@pytest.mark.parametrize("status", [Status.DELIVERED, Status.UNDELIVERED, Status.FAILED])
def test_a_final_status_writes_the_report_with_the_upstream_code(status: Status) -> None:
    (row,) = outbox_rows(PLAIN, status, report_queue="delivery-report", provider_status_code="DELIVRD",
                         error_code=None, at=AT)
    body = orjson.loads(row["body"])
    assert row["kind"] == "report" and row["destination"] == "/queue/delivery-report"
    assert row["headers"]["type"] == "smpp" and row["headers"]["persistent"] == "true"
    assert "content-length" not in row["headers"]
    assert body["MessageSID"] == "SM1" and body["ProviderStatusCode"] == "DELIVRD"
    assert body["DeliveryStatus"] == ("DELIVERED" if status is Status.DELIVERED else "FAILED")
    assert row["dedupe_key"] == "report:SM1"


def test_a_final_status_with_a_callback_writes_the_report_and_the_callback() -> None:
    rows = outbox_rows(WITH_CALLBACK, Status.FAILED, report_queue="dr", provider_status_code="1706",
                       error_code="1706", at=AT)
    assert [r["kind"] for r in rows] == ["report", "callback"]
    fields = parse_qs(rows[1]["body"])
    assert fields["MessageStatus"] == ["failed"] and fields["ErrorCode"] == ["1706"]
    assert rows[1]["destination"] == "https://crm.example/cb"


def test_sent_writes_only_a_callback_and_only_when_there_is_a_url() -> None:
    assert outbox_rows(PLAIN, Status.SENT, report_queue="dr", provider_status_code=None, error_code=None, at=AT) == []
    (row,) = outbox_rows(WITH_CALLBACK, Status.SENT, report_queue="dr", provider_status_code=None,
                         error_code="x", at=AT)
    assert row["kind"] == "callback" and "ErrorCode" not in parse_qs(row["body"])


@pytest.mark.parametrize("status", [Status.QUEUED, Status.SCHEDULED, Status.SENDING, Status.CANCELED])
def test_other_statuses_write_no_outbox_row(status: Status) -> None:
    assert outbox_rows(WITH_CALLBACK, status, report_queue="dr", provider_status_code=None, error_code=None,
                       at=AT) == []


def test_a_history_row_records_who_said_what_and_whether_it_applied() -> None:
    assert history_row("SM1", Status.DELIVERED, "smpp:smsc-main", AT, applied=False, code="DELIVRD",
                       detail="duplicate") == {
        "message_sid": "SM1", "status": "delivered", "source": "smpp:smsc-main", "applied": False,
        "provider_status_code": "DELIVRD", "detail": "duplicate", "created_at": AT}
