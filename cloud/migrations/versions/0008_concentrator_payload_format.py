"""A concentrator's payload format and time zone (the OMDP reference concentrator's, opt-in).

Revision ID: 0008_payload_format
Revises: 0007_api_keys
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_payload_format"
down_revision = "0007_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.add_column(sa.Column("payload_format", sa.String(32), nullable=True))
        batch.add_column(sa.Column("payload_time_zone", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.drop_column("payload_time_zone")
        batch.drop_column("payload_format")
