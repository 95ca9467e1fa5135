"""Firmware OTA: the firmware catalogue, campaigns, campaign waves and campaign targets.

Revision ID: 0005_firmware_ota
Revises: 0004_command_sweep_index
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_firmware_ota"
down_revision = "0004_command_sweep_index"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "firmware",
        sa.Column("firmware_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("device_models", sa.JSON(), nullable=False),
        sa.Column("image_identifier", sa.String(128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signed_manifest", sa.JSON(), nullable=False),
        _ts("manifest_created"),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        _ts("uploaded_at"),
        sa.PrimaryKeyConstraint("firmware_id", name="pk_firmware"),
    )
    op.create_table(
        "campaign",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("firmware_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("state_reason", sa.String(1024), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("grouping", sa.String(16), nullable=False),
        sa.Column("max_groups_per_wave", sa.Integer(), nullable=False),
        sa.Column("canary_size", sa.Integer(), nullable=False),
        sa.Column("success_threshold", sa.Integer(), nullable=False),
        sa.Column("error_threshold", sa.Integer(), nullable=False),
        sa.Column("max_in_flight", sa.Integer(), nullable=False),
        sa.Column("max_in_flight_per_feeder", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_delay_seconds", sa.Integer(), nullable=False),
        sa.Column("command_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("runner", sa.String(128), nullable=True),
        _ts("lease_until", nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["firmware_id"], ["firmware.firmware_id"], name="fk_campaign_firmware_id_firmware"),
        sa.PrimaryKeyConstraint("id", name="pk_campaign"),
    )
    op.create_index("ix_campaign_organisation", "campaign", ["organisation"])
    op.create_index("ix_campaign_firmware_id", "campaign", ["firmware_id"])
    op.create_index("ix_campaign_active", "campaign", ["active"])
    op.create_table(
        "campaign_wave",
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("canary", sa.Boolean(), nullable=False),
        sa.Column("target_count", sa.Integer(), nullable=False),
        _ts("started_at", nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name="fk_campaign_wave_campaign_id_campaign",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "index", name="pk_campaign_wave"),
    )
    op.create_table(
        "campaign_target",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("feeder", sa.String(64), nullable=True),
        sa.Column("concentrator_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("command_id", sa.String(36), nullable=True),
        sa.Column("issued_by", sa.String(128), nullable=True),
        sa.Column("failure_code", sa.String(64), nullable=True),
        sa.Column("failure_reason", sa.String(1024), nullable=True),
        sa.Column("reported_version", sa.String(64), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        _ts("not_before", nullable=True),
        _ts("issued_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], name="fk_campaign_target_campaign_id_campaign",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_target"),
        sa.UniqueConstraint("campaign_id", "device", name="uq_campaign_target_device"),
        sa.UniqueConstraint("command_id", name="uq_campaign_target_command_id"),
    )
    op.create_index("ix_campaign_target_campaign_state", "campaign_target", ["campaign_id", "state", "wave"])


def downgrade() -> None:
    op.drop_index("ix_campaign_target_campaign_state", table_name="campaign_target")
    op.drop_table("campaign_target")
    op.drop_table("campaign_wave")
    op.drop_index("ix_campaign_active", table_name="campaign")
    op.drop_index("ix_campaign_firmware_id", table_name="campaign")
    op.drop_index("ix_campaign_organisation", table_name="campaign")
    op.drop_table("campaign")
    op.drop_table("firmware")
