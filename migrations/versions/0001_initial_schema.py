"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 11:28:19.062752
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('api_key',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('rate_limit_per_second', sa.Double(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_key')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_key_key_hash'))
    )
    op.create_table('idempotency_record',
    sa.Column('api_key_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('api_key_id', 'key', name=op.f('pk_idempotency_record'))
    )
    op.create_table('inbound_message',
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=60), nullable=False),
    sa.Column('upstream_sid', sa.String(length=100), nullable=False),
    sa.Column('from_number', sa.String(length=40), nullable=False),
    sa.Column('to_number', sa.String(length=40), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sid', name=op.f('pk_inbound_message')),
    sa.UniqueConstraint('source', 'upstream_sid', name=op.f('uq_inbound_message_source_upstream_sid'))
    )
    op.create_table('message',
    sa.Column('sid', sa.String(length=34), nullable=False),
    sa.Column('api_key_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('batch_sid', sa.String(length=34), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('to_number', sa.String(length=20), nullable=False),
    sa.Column('from_addr', sa.String(length=20), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('encoding', sa.String(length=8), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('long_message_mode', sa.String(length=12), nullable=False),
    sa.Column('flash', sa.Boolean(), nullable=False),
    sa.Column('validity_period', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=40), nullable=False),
    sa.Column('provider', sa.String(length=60), nullable=True),
    sa.Column('status_callback', sa.Text(), nullable=True),
    sa.Column('provider_status_code', sa.String(length=40), nullable=True),
    sa.Column('error_code', sa.String(length=40), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('send_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sid', name=op.f('pk_message'))
    )
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index('ix_message_created', ['created_at', 'sid'], unique=False)
        batch_op.create_index('ix_message_due', ['due_at'], unique=False, postgresql_where=sa.text('due_at IS NOT NULL'), sqlite_where=sa.text('due_at IS NOT NULL'))
        batch_op.create_index('ix_message_lease', ['lease_expires_at'], unique=False, postgresql_where=sa.text("status = 'sending'"), sqlite_where=sa.text("status = 'sending'"))
        batch_op.create_index('ix_message_status_created', ['status', 'created_at'], unique=False)
        batch_op.create_index('ix_message_to_created', ['to_number', 'created_at'], unique=False)

    op.create_table('outbox_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=120), nullable=False),
    sa.Column('message_sid', sa.String(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_event')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_outbox_event_dedupe_key'))
    )
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_event_pending', ['available_at', 'id'], unique=False, postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))

    op.create_table('pending_receipt',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=60), nullable=True),
    sa.Column('upstream_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider_status_code', sa.String(length=40), nullable=True),
    sa.Column('error_code', sa.String(length=40), nullable=True),
    sa.Column('source', sa.String(length=60), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_receipt'))
    )
    with op.batch_alter_table('pending_receipt', schema=None) as batch_op:
        batch_op.create_index('ix_pending_receipt_upstream', ['upstream_id'], unique=False)

    op.create_table('message_part',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_sid', sa.String(length=34), nullable=False),
    sa.Column('part_no', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=60), nullable=False),
    sa.Column('upstream_id', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider_status_code', sa.String(length=40), nullable=True),
    sa.Column('error_code', sa.String(length=40), nullable=True),
    sa.Column('tlvs', sa.JSON(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['message_sid'], ['message.sid'], name=op.f('fk_message_part_message_sid_message'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_part')),
    sa.UniqueConstraint('message_sid', 'part_no', name=op.f('uq_message_part_message_sid_part_no'))
    )
    with op.batch_alter_table('message_part', schema=None) as batch_op:
        batch_op.create_index('ix_message_part_poll', ['next_poll_at'], unique=False, postgresql_where=sa.text('next_poll_at IS NOT NULL'), sqlite_where=sa.text('next_poll_at IS NOT NULL'))
        batch_op.create_index('ix_message_part_upstream', ['provider', 'upstream_id'], unique=False)

    op.create_table('status_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_sid', sa.String(length=34), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=60), nullable=False),
    sa.Column('applied', sa.Boolean(), nullable=False),
    sa.Column('provider_status_code', sa.String(length=40), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_sid'], ['message.sid'], name=op.f('fk_status_event_message_sid_message'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_event'))
    )
    with op.batch_alter_table('status_event', schema=None) as batch_op:
        batch_op.create_index('ix_status_event_message', ['message_sid', 'id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('status_event', schema=None) as batch_op:
        batch_op.drop_index('ix_status_event_message')

    op.drop_table('status_event')
    with op.batch_alter_table('message_part', schema=None) as batch_op:
        batch_op.drop_index('ix_message_part_upstream')
        batch_op.drop_index('ix_message_part_poll', postgresql_where=sa.text('next_poll_at IS NOT NULL'), sqlite_where=sa.text('next_poll_at IS NOT NULL'))

    op.drop_table('message_part')
    with op.batch_alter_table('pending_receipt', schema=None) as batch_op:
        batch_op.drop_index('ix_pending_receipt_upstream')

    op.drop_table('pending_receipt')
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_event_pending', postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))

    op.drop_table('outbox_event')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_to_created')
        batch_op.drop_index('ix_message_status_created')
        batch_op.drop_index('ix_message_lease', postgresql_where=sa.text("status = 'sending'"), sqlite_where=sa.text("status = 'sending'"))
        batch_op.drop_index('ix_message_due', postgresql_where=sa.text('due_at IS NOT NULL'), sqlite_where=sa.text('due_at IS NOT NULL'))
        batch_op.drop_index('ix_message_created')

    op.drop_table('message')
    op.drop_table('inbound_message')
    op.drop_table('idempotency_record')
    op.drop_table('api_key')
    
