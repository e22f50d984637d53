"""message_part.concat_ref: the concatenation reference of a long message's accepted parts

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("message_part", sa.Column("concat_ref", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message_part") as batch:
        batch.drop_column("concat_ref")
