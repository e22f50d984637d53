"""accounts: admin keys, no clear-text prefixes of chosen keys, per-request fields stored once

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("api_key") as batch_op:
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    # Only generated keys (`sk_` + 43 random characters) keep a prefix; a bootstrap key's first eight
    # characters may be most of it.
    op.execute("UPDATE api_key SET prefix = '' WHERE name = 'env' OR prefix NOT LIKE 'sk\\_%' ESCAPE '\\'")

    op.create_table(
        "send_request",
        sa.Column("sid", sa.String(length=34), nullable=False),
        sa.Column("api_key_id", BigId, nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status_callback", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_send_request")),
    )
    with op.batch_alter_table("message") as batch_op:
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=True)
        batch_op.create_index("ix_message_key_created", ["api_key_id", "created_at", "sid"], unique=False)


def downgrade() -> None:
    op.execute("UPDATE message SET body = (SELECT r.body FROM send_request r WHERE r.sid = message.batch_sid), "
               "status_callback = (SELECT r.status_callback FROM send_request r WHERE r.sid = message.batch_sid) "
               "WHERE body IS NULL")
    with op.batch_alter_table("message") as batch_op:
        batch_op.drop_index("ix_message_key_created")
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=False)
    op.drop_table("send_request")
    with op.batch_alter_table("api_key") as batch_op:
        batch_op.drop_column("is_admin")
