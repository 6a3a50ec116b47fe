"""action dispatch: which durable workflow carries out a due action row; notice sends

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

`workflow_id` is set when the dispatcher hands a due (or already running) row to the
durable-execution engine; `dispatched_at` lets the dispatcher find hand-offs that never
started (a worker gone for good) and hand them over again under the same workflow id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dunwell.store.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflow_id", sa.String(length=120), nullable=True))
        batch_op.add_column(
            sa.Column("dispatched_at", dunwell.store.tables.UtcDateTime(), nullable=True)
        )
        batch_op.create_index("ix_actions_workflow", ["workflow_id"], unique=False)
    op.create_table(
        "notice_sends",
        sa.Column("notice_id", sa.String(length=120), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", dunwell.store.tables.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("notice_id"),
    )


def downgrade() -> None:
    op.drop_table("notice_sends")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index("ix_actions_workflow")
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("workflow_id")
