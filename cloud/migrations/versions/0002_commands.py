"""Command lifecycle: commands, functional requests and per-device command locks.

Revision ID: 0002_commands
Revises: 0001_initial
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_commands"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "command",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("correlation_id", sa.String(36), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("sent_at", nullable=True),
        _ts("completed_at", nullable=True),
        _ts("expires_at"),
        _ts("not_before"),
        sa.PrimaryKeyConstraint("id", name="pk_command"),
    )
    op.create_index("ix_command_correlation_id", "command", ["correlation_id"])
    op.create_index("ix_command_device", "command", ["device"])
    op.create_index("ix_command_status", "command", ["status"])
    op.create_table(
        "functional_request",
        sa.Column("correlation_id", sa.String(36), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("command_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        _ts("created_at"),
        _ts("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("correlation_id", name="pk_functional_request"),
    )
    op.create_index("ix_functional_request_organisation", "functional_request", ["organisation"])
    op.create_table(
        "command_device_lock",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("command_id", sa.String(36), nullable=False),
        _ts("acquired_at"),
        sa.PrimaryKeyConstraint("device", name="pk_command_device_lock"),
    )


def downgrade() -> None:
    op.drop_table("command_device_lock")
    op.drop_index("ix_functional_request_organisation", table_name="functional_request")
    op.drop_table("functional_request")
    op.drop_index("ix_command_status", table_name="command")
    op.drop_index("ix_command_device", table_name="command")
    op.drop_index("ix_command_correlation_id", table_name="command")
    op.drop_table("command")
