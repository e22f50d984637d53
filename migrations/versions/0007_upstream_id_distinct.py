"""upstream_id is (all but) unique: tell the planner so; message_part is indexed by upstream_id alone

Receipts look messages and parts up by upstream id. An SMSC reuses an id only after its counter wraps
or restarts, but ANALYZE, sampling a table still filling, may count a few rows per id: with
`n_distinct = -1` (every row distinct, the truth) it plans each id as the one row it is from its next
run on. (Until a table is analysed at all, `bulk.rows_holding` keeps those lookups on the index.)

ix_message_part_upstream was (provider, upstream_id), but a receipt batch looks parts up by id alone
(a webhook does not say which provider it is from): PostgreSQL could only walk the whole index for each.
It is (upstream_id) now.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("message", "upstream_id"), ("message_part", "upstream_id"), ("kept_receipt", "upstream_id"))


def upgrade() -> None:
    op.drop_index("ix_message_part_upstream", table_name="message_part")
    op.create_index("ix_message_part_upstream", "message_part", ["upstream_id"])
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no per-column statistics to correct
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET (n_distinct = -1)")
        op.execute(f"ANALYZE {table} ({column})")


def downgrade() -> None:
    op.drop_index("ix_message_part_upstream", table_name="message_part")
    op.create_index("ix_message_part_upstream", "message_part", ["provider", "upstream_id"])
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} RESET (n_distinct)")
