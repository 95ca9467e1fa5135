"""Device secrets sealed at rest: DLMS keys and passwords, with a pending key beside the active
one for a two-phase key change.

Revision ID: 0014_device_secrets
Revises: 0013_meter_exchange
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_device_secrets"
down_revision = "0013_meter_exchange"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Text(), nullable=False),
        sa.Column("pending", sa.Text(), nullable=True),
        sa.Column("change_id", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f("fk_device_secret_device_id_device"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_secret")),
        sa.UniqueConstraint("device_id", "name", name="uq_device_secret_name"),
    )
    op.create_index(op.f("ix_device_secret_device_id"), "device_secret", ["device_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_device_secret_device_id"), table_name="device_secret")
    op.drop_table("device_secret")
