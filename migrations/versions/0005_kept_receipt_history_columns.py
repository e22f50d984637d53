"""kept_receipt (was pending_receipt); message.sent_at / done_at / done_source / done_detail / upstream_id

The history entries every message has (sent, final) are read from the message row instead of being
written as status_event rows, and a message of one part keeps its upstream id on its own row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.rename_table("pending_receipt", "kept_receipt")
    op.drop_index("ix_pending_receipt_upstream", table_name="kept_receipt")
    op.create_index("ix_kept_receipt_upstream", "kept_receipt", ["upstream_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE kept_receipt RENAME CONSTRAINT pk_pending_receipt TO pk_kept_receipt")
        op.execute("ALTER SEQUENCE IF EXISTS pending_receipt_id_seq RENAME TO kept_receipt_id_seq")
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("done_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("done_source", sa.String(60), nullable=True))
        batch.add_column(sa.Column("done_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("upstream_id", sa.String(100), nullable=True))
        batch.create_index("ix_message_upstream", ["upstream_id"], postgresql_where=sa.text("upstream_id IS NOT NULL"),
                           sqlite_where=sa.text("upstream_id IS NOT NULL"))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_index("ix_message_upstream")
        for column in ("upstream_id", "done_detail", "done_source", "done_at", "sent_at"):
            batch.drop_column(column)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE IF EXISTS kept_receipt_id_seq RENAME TO pending_receipt_id_seq")
        op.execute("ALTER TABLE kept_receipt RENAME CONSTRAINT pk_kept_receipt TO pk_pending_receipt")
    op.drop_index("ix_kept_receipt_upstream", table_name="kept_receipt")
    op.create_index("ix_pending_receipt_upstream", "kept_receipt", ["upstream_id"])
    op.rename_table("kept_receipt", "pending_receipt")
