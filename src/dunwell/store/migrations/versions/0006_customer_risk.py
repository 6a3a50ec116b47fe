"""customer risk: how a case was recovered, and the customers' payment signals

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

`cases.recovered_by` (retry | customer) lets the chronic-failer rule tell how a customer's
earlier cases ended; `customer_signals` keeps declines, card updates and disputes per customer
for the card-testing rules, read through (tenant_id, customer_id, at).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dunwell.store.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recovered_by", sa.String(length=16), nullable=True))
    op.create_table(
        "customer_signals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", dunwell.store.tables.UtcDateTime(), nullable=False),
        sa.Column("credential_key", sa.String(length=255), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer_signals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customer_signals_customer", ["tenant_id", "customer_id", "at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("customer_signals")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("recovered_by")
