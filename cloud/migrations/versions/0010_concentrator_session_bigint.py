"""concentrator_state.session as a 64-bit integer: a concentrator numbers its connections with
the milliseconds at the connect (edge/concentrator.py), which PostgreSQL's 32-bit integer refused
(the monitor could not record any real concentrator's birth).

Revision ID: 0010_concentrator_session_bigint
Revises: 0009_broker_accounts
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_concentrator_session_bigint"
down_revision = "0009_broker_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("concentrator_state") as batch:
        batch.alter_column("session", type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("concentrator_state") as batch:
        batch.alter_column("session", type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
