"""Initial registry schema: organisations, devices, device authorisations.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "organisation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identification", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("webhook_url", sa.String(2048), nullable=True),
        sa.Column("webhook_secret", sa.String(255), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_organisation"),
        sa.UniqueConstraint("identification", name="uq_organisation_identification"),
    )
    op.create_table(
        "device",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identification", sa.String(64), nullable=False),
        sa.Column("device_type", sa.String(32), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("protocol_version", sa.String(32), nullable=True),
        sa.Column("concentrator_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("firmware_version", sa.String(64), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("address", sa.String(512), nullable=True),
        sa.Column("feeder", sa.String(64), nullable=True),
        sa.Column("transformer", sa.String(64), nullable=True),
        sa.Column("substation", sa.String(64), nullable=True),
        _ts("last_seen", nullable=True),
        sa.Column("comm_success_count", sa.Integer(), nullable=False),
        sa.Column("comm_failure_count", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        _ts("last_failure_at", nullable=True),
        sa.Column("last_failure_reason", sa.String(512), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_device"),
        sa.UniqueConstraint("identification", name="uq_device_identification"),
    )
    op.create_index("ix_device_concentrator_id", "device", ["concentrator_id"])
    op.create_index("ix_device_feeder", "device", ["feeder"])
    op.create_index("ix_device_substation", "device", ["substation"])
    op.create_table(
        "device_authorisation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("function_group", sa.String(32), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_device_authorisation"),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], ondelete="CASCADE",
                                name="fk_device_authorisation_device_id_device"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"], ondelete="CASCADE",
                                name="fk_device_authorisation_organisation_id_organisation"),
        sa.UniqueConstraint("device_id", "organisation_id", "function_group", name="uq_device_authorisation_grant"),
    )
    op.create_index("ix_device_authorisation_organisation_id", "device_authorisation", ["organisation_id"])


def downgrade() -> None:
    op.drop_table("device_authorisation")
    op.drop_index("ix_device_substation", table_name="device")
    op.drop_index("ix_device_feeder", table_name="device")
    op.drop_index("ix_device_concentrator_id", table_name="device")
    op.drop_table("device")
    op.drop_table("organisation")
