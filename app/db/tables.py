"""Tables. Singular snake_case names, timestamps end in `_at` and are stored as UTC.

The same schema runs on PostgreSQL (production, tests) and SQLite (`make run`, smoke tests).
Indexes follow the lookups the workers make: the dispatcher's "due" scan, receipt matching by
(provider, upstream id), the outbox publishers' "due, oldest first" scan.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

# Autoincrementing 64-bit keys that SQLite also understands (it only auto-increments INTEGER).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite too (which stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key
    # The first characters of a generated key, to recognise it in lists; empty for keys the operator
    # chose (SMSGW_API_KEYS), whose beginning may be most of the secret.
    prefix: Mapped[str] = mapped_column(String(12))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    rate_limit_per_second: Mapped[float | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class SendRequest(Base):
    """What a /send request with several recipients says once for all of them.

    Its messages point to it through `message.batch_sid` and carry NULL in `body` / `status_callback`:
    a 40 KB text to 10,000 numbers is stored once, not 10,000 times. A single-recipient request keeps
    them on its message row (no second row to write on the hot path), as do rows written before this
    table existed; `message_body` / `message_callback` below read either."""

    __tablename__ = "send_request"

    sid: Mapped[str] = mapped_column(String(34), primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(BigId, default=None)
    body: Mapped[str] = mapped_column(Text)
    status_callback: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


MESSAGE_FILLFACTOR = 60  # per cent of each page filled by inserts; the rest is for HOT updates (see below)


class Message(Base):
    __tablename__ = "message"

    sid: Mapped[str] = mapped_column(String(34), primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(BigId, default=None)
    batch_sid: Mapped[str | None] = mapped_column(String(34), default=None)  # its send_request, if any
    status: Mapped[str] = mapped_column(String(16))
    to_number: Mapped[str] = mapped_column(String(20))
    from_addr: Mapped[str | None] = mapped_column(String(20), default=None)
    body: Mapped[str | None] = mapped_column(Text, default=None)  # NULL: in its send_request
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(Integer)
    long_message_mode: Mapped[str] = mapped_column(String(12), default="split")
    flash: Mapped[bool] = mapped_column(Boolean, default=False)
    validity_period: Mapped[int | None] = mapped_column(Integer, default=None)
    channel: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str | None] = mapped_column(String(60), default=None)
    status_callback: Mapped[str | None] = mapped_column(Text, default=None)
    provider_status_code: Mapped[str | None] = mapped_column(String(40), default=None)
    error_code: Mapped[str | None] = mapped_column(String(40), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    send_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the dispatcher may take it next (SendAt, retry backoff); NULL once it is no longer due.
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The two history entries every message has are read from these columns, not written as status_event
    # rows (two rows per message saved on the hot path): when the upstream accepted it (`sent_at`, by
    # `provider`), and its final status (`done_at`, reported by `done_source`, its code in
    # `provider_status_code`, `done_detail` what the history says of it). NULL for rows written before
    # migration 0005, whose history is all in status_event.
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # A message sent in one part to a provider that is not polled keeps the upstream's id for it here
    # instead of in a message_part row (one row version less per message); receipts match on either.
    upstream_id: Mapped[str | None] = mapped_column(String(100), default=None)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
    done_source: Mapped[str | None] = mapped_column(String(60), default=None)
    done_detail: Mapped[str | None] = mapped_column(Text, default=None)
    if TYPE_CHECKING:  # column properties, mapped below (they need SendRequest's columns)
        full_body: Mapped[str]
        callback_url: Mapped[str | None]

    # No index holds `status` (nor the columns a final report writes), so that report's UPDATE is HOT:
    # PostgreSQL writes the new row version on the same page and no index entry (the UPDATE that records
    # the upstream's acceptance sets upstream_id and sent_at, and cannot be). `fillfactor` keeps room on
    # each page for it. The timeout sweep finds messages still `sent` through ix_message_sent instead of
    # a status index (dispatch_store.scan_sent).
    __table_args__ = (
        # The dispatcher's scan: only rows still waiting for it carry a due_at.
        Index("ix_message_due", "due_at", postgresql_where=text("due_at IS NOT NULL"),
              sqlite_where=text("due_at IS NOT NULL")),
        # Leases still held: a row leaves it when the upstream answers (or the message is given back).
        Index("ix_message_lease", "lease_expires_at", postgresql_where=text("lease_expires_at IS NOT NULL"),
              sqlite_where=text("lease_expires_at IS NOT NULL")),
        Index("ix_message_created", "created_at", "sid"),
        Index("ix_message_to_created", "to_number", "created_at"),
        Index("ix_message_key_created", "api_key_id", "created_at", "sid"),  # an account's list
        Index("ix_message_upstream", "upstream_id", postgresql_where=text("upstream_id IS NOT NULL"),
              sqlite_where=text("upstream_id IS NOT NULL")),  # receipt matching
        Index("ix_message_sent", "sent_at", "sid", postgresql_where=text("sent_at IS NOT NULL"),
              sqlite_where=text("sent_at IS NOT NULL")),  # the receipt-timeout sweep, in the order sent
        {"postgresql_with": {"fillfactor": MESSAGE_FILLFACTOR}},
    )


def _from_request(column: Any) -> Any:
    return (select(column).where(SendRequest.sid == Message.batch_sid)
            .correlate_except(SendRequest).scalar_subquery())


# The message's text and StatusCallback, wherever they are stored (see SendRequest). Read-only: use
# them in SELECTs and RETURNING; write `body` / `status_callback` or a send_request row.
# `full_body` is deferred: the receipt path loads messages by the hundred and never needs the text.
Message.full_body = column_property(func.coalesce(Message.body, _from_request(SendRequest.body)), deferred=True)
Message.callback_url = column_property(
    func.coalesce(Message.status_callback, _from_request(SendRequest.status_callback)))


class MessagePart(Base):
    """One row per part of a message sent upstream, holding the id the upstream gave it (for receipts).

    `status` is the part's own: `sent` and on once the upstream accepted it (with its `upstream_id`);
    `queued` while a long message refused part-way waits to send it (the code that refused it in
    `provider_status_code`); `failed` for the part whose refusal failed the message, `canceled` for
    parts never sent because of that. `concat_ref` is the concatenation reference the accepted parts
    carry, which the rest must carry too.
    """

    __tablename__ = "message_part"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_sid: Mapped[str] = mapped_column(ForeignKey("message.sid", ondelete="CASCADE"))
    part_no: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(60))
    upstream_id: Mapped[str | None] = mapped_column(String(100), default=None)
    status: Mapped[str] = mapped_column(String(16))
    provider_status_code: Mapped[str | None] = mapped_column(String(40), default=None)
    error_code: Mapped[str | None] = mapped_column(String(40), default=None)
    tlvs: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
    next_poll_at: Mapped[datetime | None] = mapped_column(default=None)
    concat_ref: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (
        UniqueConstraint("message_sid", "part_no"),
        Index("ix_message_part_upstream", "upstream_id"),  # receipts name the id, not always the provider
        Index("ix_message_part_poll", "next_poll_at", postgresql_where=text("next_poll_at IS NOT NULL"),
              sqlite_where=text("next_poll_at IS NOT NULL")),
    )


class StatusEvent(Base):
    """The message's history besides what its own row says (see Message.sent_at): retries, scheduling,
    cancellation, intermediate and duplicate reports, applied or not."""

    __tablename__ = "status_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_sid: Mapped[str] = mapped_column(ForeignKey("message.sid", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(60))
    applied: Mapped[bool] = mapped_column(Boolean, default=True)
    provider_status_code: Mapped[str | None] = mapped_column(String(40), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_status_event_message", "message_sid", "id"),)


class KeptReceipt(Base):
    """A status report for an upstream id we do not know (yet): kept until that id appears
    (services/kept_receipts.py)."""

    __tablename__ = "kept_receipt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str | None] = mapped_column(String(60), default=None)
    upstream_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    provider_status_code: Mapped[str | None] = mapped_column(String(40), default=None)
    error_code: Mapped[str | None] = mapped_column(String(40), default=None)
    source: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()

    __table_args__ = (Index("ix_kept_receipt_upstream", "upstream_id"),)


class SweepMark(Base):
    """How far a sweep over messages in the order sent has got (one row per sweep, by name): every
    message sent up to (`sent_at`, `sid`) is past what the sweep looks for. Shared by every replica;
    the one holding the row's lock sweeps (dispatching.expire_unreceipted)."""

    __tablename__ = "sweep_mark"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)  # NULL: from the first message sent
    sid: Mapped[str] = mapped_column(String(34), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundMessage(Base):
    __tablename__ = "inbound_message"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)  # ours
    source: Mapped[str] = mapped_column(String(60))  # "webhook" or the SMPP provider's name
    upstream_sid: Mapped[str] = mapped_column(String(100))  # SmsSid, or the SMPP message id
    from_number: Mapped[str] = mapped_column(String(40))
    to_number: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("source", "upstream_sid"),)


class OutboxEvent(Base):
    """Something to publish after the transaction that caused it commits; deleted once published.

    `kind`: `report` (ActiveMQ delivery-report), `inbound` (ActiveMQ inbound-sms),
    `callback` (HTTP POST to a StatusCallback URL), `forward` (inbound to the forward URL).
    A row costs its INSERT and its DELETE (app/db/outbox_store.py). `published_at` is set only on a
    callback or forward given up (with `last_error`), which stays as the record of that failure;
    `attempts` counts failed HTTP tries. `lease_owner` / `lease_expires_at` are no longer written
    (claims are row locks now) but still honoured, for rows leased by a process of an older version.
    """

    __tablename__ = "outbox_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    message_sid: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # Kind first: the broker publisher and the HTTP sender each scan only their own kinds' rows.
        Index("ix_outbox_event_pending", "kind", "available_at", "id",
              postgresql_where=text("published_at IS NULL"), sqlite_where=text("published_at IS NULL")),
    )


class OutboxAttempt(Base):
    """One batch being sent to the broker: written and committed before its SENDs. Once the transaction
    that deletes its rows commits it is finished (it names rows that are gone), and its publisher
    rewrites it for its next batch. One whose rows came back (the process died, the receipt never
    came, the database commit failed) marks its `event_ids` in doubt: whoever claims
    those rows next asks the broker's ledger whether that batch was committed, by `ledger_key` (random:
    unique across databases sharing a broker), before sending (events/stomp_publisher.py)."""

    __tablename__ = "outbox_attempt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))
    ledger_key: Mapped[str] = mapped_column(String(40), default=lambda: secrets.token_hex(16))
    # bigint[] on PostgreSQL, a JSON list on SQLite (no arrays there).
    event_ids: Mapped[list[int]] = mapped_column(JSON().with_variant(ARRAY(BigInteger()), "postgresql"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_record"

    api_key_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
