"""Broker accounts (the registry's record of every broker login), one-time provisioning claims,
and the client certificates the CA issued with their revocations.

Revision ID: 0009_broker_accounts
Revises: 0008_payload_format
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_broker_accounts"
down_revision = "0008_payload_format"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "broker_account",
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("username", name="pk_broker_account"),
    )
    op.create_index("ix_broker_account_organisation", "broker_account", ["organisation"])
    op.create_table(
        "provisioning_claim",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("concentrator_id", sa.String(64), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("redeemed_at", nullable=True),
        sa.Column("public_key_sha256", sa.String(64), nullable=True),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_provisioning_claim"),
    )
    op.create_table(
        "client_certificate",
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("concentrator_id", sa.String(64), nullable=False),
        _ts("issued_at"),
        _ts("not_after"),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("serial", name="pk_client_certificate"),
    )
    op.create_index("ix_client_certificate_concentrator_id", "client_certificate", ["concentrator_id"])


def downgrade() -> None:
    op.drop_index("ix_client_certificate_concentrator_id", table_name="client_certificate")
    op.drop_table("client_certificate")
    op.drop_table("provisioning_claim")
    op.drop_index("ix_broker_account_organisation", table_name="broker_account")
    op.drop_table("broker_account")
