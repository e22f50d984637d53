"""outbox_attempt: one row per batch sent to the broker, so outbox rows can leave in one DELETE

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # outbox_event keeps its columns: rows are deleted once published now, and lease_owner /
    # lease_expires_at / attempts stay for rows an older process may still lease during an upgrade.
    op.create_table(
        "outbox_attempt",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("ledger_key", sa.String(length=40), nullable=False),
        sa.Column("event_ids", sa.JSON().with_variant(postgresql.ARRAY(sa.BigInteger()), "postgresql"),
                  nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_attempt")),
    )
    # Kind first: each publisher scans only its own kinds (the broker's reports and the HTTP callbacks
    # no longer walk each other's rows, live or deleted).
    with op.batch_alter_table("outbox_event") as batch:
        batch.drop_index("ix_outbox_event_pending")
        batch.create_index("ix_outbox_event_pending", ["kind", "available_at", "id"],
                           postgresql_where=sa.text("published_at IS NULL"), sqlite_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table("outbox_event") as batch:
        batch.drop_index("ix_outbox_event_pending")
        batch.create_index("ix_outbox_event_pending", ["available_at", "id"],
                           postgresql_where=sa.text("published_at IS NULL"), sqlite_where=sa.text("published_at IS NULL"))
    op.drop_table("outbox_attempt")
