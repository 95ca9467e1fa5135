"""Events monitoring raised before they were served through the subscriptions: marked notified.

The monitor now hands out again the events it raised and stored but never served (notified_at
unset, a process killed in between). Before, it never set notified_at on them: mark those as
served (at the time they occurred), so the first monitor after the upgrade does not send them
again.

Revision ID: 0015_monitoring_events_notified
Revises: 0014_device_secrets
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_monitoring_events_notified"
down_revision = "0014_device_secrets"
branch_labels = None
depends_on = None

RAISED_BY_MONITORING = ("CONCENTRATOR_ONLINE", "CONCENTRATOR_OFFLINE", "DEVICE_ONLINE", "DEVICE_OFFLINE",
                        "COMMUNICATION_FAILURE", "CLOCK_DRIFT")


def upgrade() -> None:
    event = sa.table("monitoring_event", sa.column("event_type", sa.String), sa.column("occurred_at"),
                     sa.column("notified_at"))
    op.execute(event.update().where(event.c.notified_at.is_(None), event.c.event_type.in_(RAISED_BY_MONITORING))
               .values(notified_at=event.c.occurred_at))


def downgrade() -> None:
    pass  # which of them were served before is not known: they stay marked
