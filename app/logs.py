"""Logging: JSON lines in production, readable lines in `make run`; secrets scrubbed from every line.

Every record passes through `RedactFilter`, which removes secret query parameters (`password=`,
`pass=`, `token=`…) and the configured secret values themselves, from the message and from string
`extra` values: a safety net under the rule that code never logs a secret in the first place.

Every record also passes through `ContextFilter`, which adds the `request_id` of the HTTP request
being served and the `message_sid` of the message being worked on, when the code that logs runs
inside one (`request_id_var`, `message_sid_var`). A line that passes its own `extra={"message_sid": …}`
(batch code handling many messages at once) keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TextIO

import orjson

# Secret-looking query parameters, in URLs and in text quoting them.
SECRET_PARAMS = ("password", "pass", "pwd", "auth_token", "token", "api_key", "apikey", "key", "secret")
_SECRET_RE = re.compile(
    r"(?i)(?P<k>(?:^|[?&;\s\"'])(?:" + "|".join(SECRET_PARAMS) + r")=)(?P<v>[^&;\s\"']*)"
)


def redact(text: str, *secrets: str | None) -> str:
    """`text` with secret query parameters and the given secret values replaced by `***`."""
    out = _SECRET_RE.sub(_masked, text) if "=" in text else text  # the pattern needs its `=`
    for s in secrets:
        if s:
            out = out.replace(s, "***")
    return out


def _masked(m: re.Match[str]) -> str:
    return m.group("k") + "***"


# `color_message` is uvicorn's copy of the message with terminal escape codes: never a field of ours.
_STD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
# A LogRecord sets its standard attributes first; `extra=` and the context filter add theirs after them.
_N_STD = len(logging.makeLogRecord({}).__dict__)
# Shown first among a line's fields, in this order.
_CONTEXT = ("request_id", "message_sid")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
message_sid_var: ContextVar[str | None] = ContextVar("message_sid", default=None)


class ContextFilter(logging.Filter):
    """Adds `request_id` and `message_sid` from the context to records that do not carry their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        request_id = request_id_var.get()
        if request_id is not None and "request_id" not in fields:
            fields["request_id"] = request_id
        sid = message_sid_var.get()
        if sid is not None and "message_sid" not in fields:
            fields["message_sid"] = sid
        return True


class RedactFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 3)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text, *self.secrets)
        # `extra` strings too: a provider's error detail may quote the request it refused.
        fields = record.__dict__
        own = [k for k in _own(fields) if type(fields[k]) is str]
        # Nearly every line has nothing to hide: one look at all its text decides whether to go field by field.
        everything = "\0".join([text, *(fields[k] for k in own)])
        clean = text
        if "=" in everything or any(s in everything for s in self.secrets):
            clean = redact(text, *self.secrets)
            for k in own:
                fields[k] = redact(fields[k], *self.secrets)
        if clean != text or record.args:
            record.msg, record.args = clean, None
        return True


def _own(fields: dict[str, Any]) -> list[str]:
    """The names of a record's own fields (`extra=`, the context), in the order they were added: only the
    keys past the standard attributes are looked at."""
    return [k for k in islice(fields, _N_STD, None) if k not in _STD]


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The record's own fields (`extra=`, the context), request and message ids first."""
    fields = record.__dict__
    head = [(k, fields[k]) for k in _CONTEXT if fields.get(k) is not None]
    rest = [(k, fields[k]) for k in _own(fields) if k not in _CONTEXT and not k.startswith("_")]
    return head + rest


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC),  # orjson writes it as isoformat() would
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record))
        base = f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} {record.levelname:<7} " \
               f"{record.name}: {record.getMessage()}"
        if extras:
            base += f"  [{extras}]"
        if record.exc_info:
            base += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return base


class LineHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes the lines logged from an event loop once per turn of the loop, in one
    write, rather than a write and a flush each: at INFO a message makes three lines, and each was a
    system call. WARNING and above, lines from a thread without a running loop, and a turn's 512th line
    go out at once, with whatever is pending before them; so does everything at exit (`flush`). A line
    waits at most until the loop's next turn (a `kill -9` loses that turn's INFO lines, never a warning)."""

    MAX_PENDING = 512

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None  # the loop a write-out is due on

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if record.levelno < logging.WARNING and len(self._pending) < self.MAX_PENDING:
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None and self._scheduled is loop:
                return
            if loop is not None and self._scheduled is None:
                self._scheduled = loop
                loop.call_soon(self._write_out)
                return
        self._write_pending()

    def _write_out(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            self._write_pending()

    def _write_pending(self) -> None:
        self._scheduled = None  # a write-out still due finds nothing pending, or what came since
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the stream is gone (closed at exit, a broken pipe): nowhere to write
            pass

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        super().flush()


def setup_logging(fmt: str = "json", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    # A record skips what no line of ours shows (the logging docs' "Optimization"): the caller's file,
    # line and function (a walk up the stack), the thread, the process and its multiprocessing name.
    # At INFO a message makes three lines; those lookups were a fifth of their cost.
    logging._srcfile = None  # documented as the switch for findCaller
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # alembic: seven "setup plugin" lines and the migration context at every start.
    for noisy in ("httpx", "httpcore", "aiosmpplib", "stomp.py", "sqlalchemy.engine", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def logging_configured() -> bool:
    """Whether `setup_logging` has run in this process (its handler is the root logger's)."""
    return any(isinstance(h, LineHandler) for h in logging.getLogger().handlers)


def settings_secrets(settings: Any) -> list[str]:
    """Every secret value in the settings, for the redaction filter."""
    out: list[str] = [*settings.api_key_list(), *settings.admin_api_key_list()]
    for kind, rest in settings.webhook_auth_modes():
        if kind == "token" and rest:
            out.append(rest)
        elif kind == "basic":
            out.append(rest.partition(":")[2])
    if settings.callback_signing_token is not None:
        out.append(settings.callback_signing_token.get_secret_value())
    if settings.broker_password is not None:
        out.append(settings.broker_password.get_secret_value())
    for p in settings.providers:
        for attr in ("password", "auth_token"):
            value = getattr(p, attr, None)
            if value is not None:
                out.append(value.get_secret_value())
    return out
