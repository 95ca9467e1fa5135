"""organisation.webhook_secret as text: it now holds the secret sealed (cloud.registry.webhook_secrets),
longer than the 255 characters a clear secret needed.

Values stored in clear before are left as they are: ``gridwire secrets reseal`` seals them with
the platform's key ring, and the API and domain processes refuse to start until it has.

On SQLite the column is replaced in place (added, copied, the old one dropped, renamed): a batch
copy of the whole table would drop ``organisation``, and with foreign keys on, that deletes every
authorisation and API key that cascades from it.

Revision ID: 0016_webhook_secret_sealed
Revises: 0015_monitoring_events_notified
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_webhook_secret_sealed"
down_revision = "0015_monitoring_events_notified"
branch_labels = None
depends_on = None


def _retype(column_type: str, sqlalchemy_type: sa.types.TypeEngine, existing: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("organisation", "webhook_secret", type_=sqlalchemy_type, existing_type=existing,
                        existing_nullable=True)
        return
    op.execute(f"ALTER TABLE organisation ADD COLUMN webhook_secret_new {column_type}")
    op.execute("UPDATE organisation SET webhook_secret_new = webhook_secret")
    op.execute("ALTER TABLE organisation DROP COLUMN webhook_secret")
    op.execute("ALTER TABLE organisation RENAME COLUMN webhook_secret_new TO webhook_secret")


def upgrade() -> None:
    _retype("TEXT", sa.Text(), sa.String(255))


def downgrade() -> None:
    _retype("VARCHAR(255)", sa.String(255), sa.Text())
