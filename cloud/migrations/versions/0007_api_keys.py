"""API keys per organisation (hashed secret, scope, expiry, revocation) and the bootstrap marker.

Revision ID: 0007_api_keys
Revises: 0006_webhook_delivery
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_api_keys"
down_revision = "0006_webhook_delivery"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(512), nullable=True),
        _ts("created_at"),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"], ondelete="CASCADE",
                                name="fk_api_key_organisation_id_organisation"),
        sa.PrimaryKeyConstraint("id", name="pk_api_key"),
    )
    op.create_index("ix_api_key_organisation_id", "api_key", ["organisation_id"])
    op.create_table(
        "platform_bootstrap",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_platform_bootstrap"),
    )


def downgrade() -> None:
    op.drop_table("platform_bootstrap")
    op.drop_index("ix_api_key_organisation_id", table_name="api_key")
    op.drop_table("api_key")
