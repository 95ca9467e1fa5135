"""Device events: subscriptions say which channels (app topic, webhook) an organisation wants;
an event records when its notifications were handed out; the event log is read by time.

Revision ID: 0011_device_events
Revises: 0010_concentrator_session_bigint
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_device_events"
down_revision = "0010_concentrator_session_bigint"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notification_subscription",
                  sa.Column("mqtt", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("notification_subscription",
                  sa.Column("webhook", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("monitoring_event", sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_monitoring_event_occurred_at", "monitoring_event", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_monitoring_event_occurred_at", table_name="monitoring_event")
    with op.batch_alter_table("monitoring_event") as batch:
        batch.drop_column("notified_at")
    with op.batch_alter_table("notification_subscription") as batch:
        batch.drop_column("webhook")
        batch.drop_column("mqtt")
