"""device_schedule: the schedule each device should keep itself, the version last sent to it and
the version it reports holding, so a device that comes back without it gets it again.

Revision ID: 0012_device_schedule
Revises: 0011_device_events
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_device_schedule"
down_revision = "0011_device_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_schedule",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_version", sa.BigInteger(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_correlation", sa.String(36), nullable=True),
        sa.Column("resends", sa.Integer(), nullable=False),
        sa.Column("reported_version", sa.BigInteger(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("device", name="pk_device_schedule"),
    )


def downgrade() -> None:
    op.drop_table("device_schedule")
