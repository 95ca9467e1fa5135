"""Meter exchanges: when a meter individual's physical meter was replaced (processing lets its
cumulative registers restart there).

Revision ID: 0013_meter_exchange
Revises: 0012_device_schedule
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_meter_exchange"
down_revision = "0012_device_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_exchange",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("exchanged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(512), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_meter_exchange_meter_at", "meter_exchange", ["meter_id", "exchanged_at"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_meter_exchange_meter_at", table_name="meter_exchange")
    op.drop_table("meter_exchange")
