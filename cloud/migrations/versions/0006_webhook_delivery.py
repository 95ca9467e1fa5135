"""Webhook delivery outbox: notifications owed to organisations' webhooks, with a lease per delivery.

Revision ID: 0006_webhook_delivery
Revises: 0005_firmware_ota
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_webhook_delivery"
down_revision = "0005_firmware_ota"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        _ts("created_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        _ts("claimed_until", nullable=True),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_delivery"),
    )
    op.create_index("ix_webhook_delivery_state_next_attempt_at", "webhook_delivery", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_state_next_attempt_at", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
