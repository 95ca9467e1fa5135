"""Scheduling, device status monitoring and clock-drift tables.

Revision ID: 0003_scheduling
Revises: 0002_commands
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_scheduling"
down_revision = "0002_commands"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("topic", sa.String(1024), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("message_expiry", sa.Integer(), nullable=True),
        sa.Column("missed_policy", sa.String(16), nullable=False),
        sa.Column("grace_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _ts("next_run", nullable=True),
        _ts("pending_run", nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        _ts("lease_until", nullable=True),
        _ts("last_run", nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_schedule"),
    )
    op.create_index("ix_schedule_organisation", "schedule", ["organisation"])
    op.create_index("ix_schedule_next_run", "schedule", ["next_run"])
    op.create_table(
        "concentrator_state",
        sa.Column("concentrator_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("session", sa.Integer(), nullable=False),
        _ts("status_at"),
        sa.Column("software_version", sa.String(64), nullable=True),
        sa.Column("outbox_backlog", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(512), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("concentrator_id", name="pk_concentrator_state"),
    )
    op.create_table(
        "device_connectivity",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        _ts("since"),
        sa.Column("reason", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_connectivity"),
    )
    op.create_table(
        "notification_subscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_subscription"),
        sa.UniqueConstraint("organisation", "event_type", name="uq_notification_subscription_org_event"),
    )
    op.create_index("ix_notification_subscription_organisation", "notification_subscription", ["organisation"])
    op.create_table(
        "monitoring_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        _ts("occurred_at"),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_event"),
        sa.UniqueConstraint("event_id", name="uq_monitoring_event_event_id"),
    )
    op.create_index("ix_monitoring_event_device_id", "monitoring_event", ["device_id"])
    op.create_table(
        "clock_drift",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("concentrator_id", sa.String(64), nullable=True),
        _ts("measured_at"),
        sa.Column("drift_seconds", sa.Float(), nullable=False),
        sa.Column("corrected", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clock_drift"),
    )
    op.create_index("ix_clock_drift_meter_measured", "clock_drift", ["meter_id", "measured_at"])


def downgrade() -> None:
    op.drop_index("ix_clock_drift_meter_measured", table_name="clock_drift")
    op.drop_table("clock_drift")
    op.drop_index("ix_monitoring_event_device_id", table_name="monitoring_event")
    op.drop_table("monitoring_event")
    op.drop_index("ix_notification_subscription_organisation", table_name="notification_subscription")
    op.drop_table("notification_subscription")
    op.drop_table("device_connectivity")
    op.drop_table("concentrator_state")
    op.drop_index("ix_schedule_next_run", table_name="schedule")
    op.drop_index("ix_schedule_organisation", table_name="schedule")
    op.drop_table("schedule")
