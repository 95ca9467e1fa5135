"""An index for the core pump's sweep of overdue commands: (status, expires_at).

The sweep asks for open commands whose time-to-live has passed, oldest first. With only an
index on ``status`` it read every open command (tens of thousands while a fleet is being
switched) twice a second in every core process. The composite index answers it from a few
entries and, leading with ``status``, serves every lookup the old single-column index did,
so that one goes.

Revision ID: 0004_command_sweep_index
Revises: 0003_scheduling
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004_command_sweep_index"
down_revision = "0003_scheduling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_command_status_expires_at", "command", ["status", "expires_at"])
    op.drop_index("ix_command_status", table_name="command")


def downgrade() -> None:
    op.create_index("ix_command_status", "command", ["status"])
    op.drop_index("ix_command_status_expires_at", table_name="command")
