"""The log context filter and the two formatters: request and message ids on the line when known."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from app.config import Settings
from app.logs import (
    ConsoleFormatter,
    ContextFilter,
    JsonFormatter,
    LineHandler,
    RedactFilter,
    message_sid_var,
    request_id_var,
    settings_secrets,
    setup_logging,
)


def _record(msg: str = "message accepted", **extra: object) -> logging.LogRecord:
    record = logging.getLogger("smsgw.test").makeRecord("smsgw.test", logging.INFO, __file__, 1, msg, (), None,
                                                        extra=extra or None)
    for f in (ContextFilter(), RedactFilter(["s3cr3t-key"])):
        assert f.filter(record)
    return record


@pytest.fixture
def context() -> Iterator[None]:
    rid, sid = request_id_var.set("req-1"), message_sid_var.set("SM0123")
    yield
    message_sid_var.reset(sid)
    request_id_var.reset(rid)


def test_json_line_has_request_id_and_message_sid_from_the_context(context: None) -> None:
    doc = orjson.loads(JsonFormatter().format(_record(to="+14155550100")))
    assert doc["request_id"] == "req-1" and doc["message_sid"] == "SM0123"
    assert doc["msg"] == "message accepted" and doc["to"] == "+14155550100"
    assert list(doc)[4:6] == ["request_id", "message_sid"]  # right after ts, level, logger, msg


@pytest.mark.parametrize("created", [1_796_342_400.0, 1_796_342_400.000005, 1_796_342_461.751635])
def test_json_line_ts_is_the_iso_8601_utc_time_of_the_record(created: float) -> None:
    record = _record()
    record.created = created
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["ts"] == datetime.fromtimestamp(created, UTC).isoformat()
    assert doc["ts"].endswith("+00:00") and list(doc)[:4] == ["ts", "level", "logger", "msg"]


def test_json_line_has_no_context_keys_outside_a_request_or_message() -> None:
    doc = orjson.loads(JsonFormatter().format(_record()))
    assert "request_id" not in doc and "message_sid" not in doc


def test_an_explicit_message_sid_wins_over_the_context(context: None) -> None:
    doc = orjson.loads(JsonFormatter().format(_record("status", message_sid="SM9999")))
    assert doc["message_sid"] == "SM9999" and doc["request_id"] == "req-1"


def test_an_explicit_none_message_sid_is_left_out(context: None) -> None:
    doc = orjson.loads(JsonFormatter().format(_record("status", message_sid=None)))
    assert "message_sid" not in doc


def test_console_line_shows_the_ids_first(context: None) -> None:
    line = ConsoleFormatter().format(_record(channel="smpp"))
    assert line.endswith("smsgw.test: message accepted  [request_id=req-1 message_sid=SM0123 channel=smpp]")


def test_console_line_without_context_has_no_ids() -> None:
    line = ConsoleFormatter().format(_record())
    assert "request_id" not in line and "message_sid" not in line and "[" not in line


def test_secrets_in_extra_values_are_redacted() -> None:
    doc = orjson.loads(JsonFormatter().format(_record("submit failed", detail="GET /api?user=u&password=hunter2 "
                                                                                "key s3cr3t-key refused")))
    assert "hunter2" not in doc["detail"] and "s3cr3t-key" not in doc["detail"]
    assert "password=***" in doc["detail"]


def test_a_secret_is_redacted_in_text_without_any_parameter() -> None:
    record = _record("bind refused for s3cr3t-key", reason="the SMSC said s3cr3t-key is wrong")
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["msg"] == "bind refused for ***" and doc["reason"] == "the SMSC said *** is wrong"


def test_a_line_with_nothing_to_hide_keeps_its_text_and_fields() -> None:
    record = logging.getLogger("smsgw.test").makeRecord("smsgw.test", logging.INFO, __file__, 1, "%d parts sent to %s",
                                                        (3, "+14155550100"), None, extra={"provider": "smsc-main"})
    assert RedactFilter(["s3cr3t-key"]).filter(record)
    assert (record.msg, record.args) == ("3 parts sent to +14155550100", None)
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["msg"] == "3 parts sent to +14155550100" and doc["provider"] == "smsc-main"


def test_setup_logging_puts_the_ids_on_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("json", "INFO", ["s3cr3t-key"])
        log = logging.getLogger("smsgw.test")
        log.info("outside")
        token = request_id_var.set("abc123")
        try:
            log.info("inside", extra={"message_sid": "SM42"})
            log.info("key s3cr3t-key")
        finally:
            request_id_var.reset(token)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in lines] == ["outside", "inside", "key ***"]
    assert "request_id" not in lines[0] and "message_sid" not in lines[0]
    assert lines[1]["request_id"] == "abc123" and lines[1]["message_sid"] == "SM42"
    assert lines[2]["request_id"] == "abc123" and "message_sid" not in lines[2]


def test_uvicorn_color_message_is_never_a_field() -> None:
    record = _record("Uvicorn running on http://127.0.0.1:8080",
                     color_message="Uvicorn running on \x1b[1m%s://%s:%d\x1b[0m")
    line = ConsoleFormatter().format(record)
    assert "color_message" not in line and "\x1b" not in line
    assert "color_message" not in orjson.loads(JsonFormatter().format(record))


def test_alembic_start_up_lines_are_not_logged() -> None:
    setup_logging("console", "INFO")
    assert not logging.getLogger("alembic.runtime.plugins").isEnabledFor(logging.INFO)
    assert logging.getLogger("alembic.runtime.plugins").isEnabledFor(logging.WARNING)


class _Stream:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def _line_logger(stream: _Stream) -> logging.Logger:
    log = logging.getLogger("smsgw.test.lines")
    handler = LineHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


async def test_lines_logged_in_one_turn_of_the_loop_go_out_as_one_write_at_its_end() -> None:
    stream = _Stream()
    log = _line_logger(stream)
    for n in range(3):
        log.info("line %d", n)
    assert stream.writes == []  # still this turn
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.writes == ["INFO line 0\nINFO line 1\nINFO line 2\n"]
    log.info("next turn")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.writes[1:] == ["INFO next turn\n"]


async def test_a_warning_goes_out_at_once_after_what_is_pending() -> None:
    stream = _Stream()
    log = _line_logger(stream)
    log.info("before")
    log.warning("trouble")
    assert stream.writes == ["INFO before\nWARNING trouble\n"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.writes == ["INFO before\nWARNING trouble\n"]  # the write-out due finds nothing left


async def test_a_line_from_a_thread_and_a_flush_write_at_once_in_order() -> None:
    stream = _Stream()
    log = _line_logger(stream)
    log.info("from the loop")
    # The loop may turn (and write its line) while the thread starts; either way both are out, in order.
    await asyncio.to_thread(log.info, "from a thread")
    assert "".join(stream.writes) == "INFO from the loop\nINFO from a thread\n"
    log.info("pending at exit")
    log.handlers[0].flush()
    assert stream.writes[-1] == "INFO pending at exit\n"


def test_outside_a_loop_each_line_is_written_at_once() -> None:
    stream = _Stream()
    log = _line_logger(stream)
    log.info("one")
    log.info("two")
    assert stream.writes == ["INFO one\n", "INFO two\n"]


async def test_a_turn_with_more_lines_than_max_pending_writes_them_as_it_goes() -> None:
    stream = _Stream()
    log = _line_logger(stream)
    for n in range(LineHandler.MAX_PENDING + 1):
        log.info("%d", n)
    assert len(stream.writes) == 1 and stream.writes[0].count("\n") == LineHandler.MAX_PENDING
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.writes[1] == f"INFO {LineHandler.MAX_PENDING}\n"


def test_every_configured_credential_is_a_secret_to_redact() -> None:
    settings = Settings(database_url="x", api_keys="k-plain-1", admin_api_keys="k-admin-1",
                        webhook_auth="token:hook-tok-1, basic:hook:hook-pw-1,twilio-signature",
                        callback_signing_token="sign-tok-1", broker_password="mq-pw-1",
                        providers=[{"name": "smsc", "type": "smpp", "system_id": "a", "password": "sm-pw-1"}])
    assert set(settings_secrets(settings)) == {"k-plain-1", "k-admin-1", "hook-tok-1", "hook-pw-1", "sign-tok-1",
                                               "mq-pw-1", "sm-pw-1"}
