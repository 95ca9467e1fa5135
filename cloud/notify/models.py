"""The webhook delivery outbox: one row per notification owed to an organisation's webhook.

Created only by the Alembic revision ``0006_webhook_delivery``; it lives on the registry's
declarative Base so the registry's migration test compares it too. A row is PENDING until a
receiver accepts it (DELIVERED) or it is given up (FAILED, with the last error). While a
delivery process is sending it, ``claimed_by``/``claimed_until`` hold its lease: no other
process takes the row until the lease has run out.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow

UUID_LENGTH = 36
EVENT_LENGTH = 128
ERROR_LENGTH = 1024
WORKER_LENGTH = 128


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class WebhookDeliveryRow(Base):
    """One notification for one organisation's webhook and how far its delivery got."""

    __tablename__ = "webhook_delivery"
    # The claim reads due PENDING rows, oldest due first; the purge reads old DELIVERED ones.
    __table_args__ = (Index("ix_webhook_delivery_state_next_attempt_at", "state", "next_attempt_at"),)

    # Sent as X-Gridwire-Delivery; the same for every attempt, so receivers de-duplicate on it.
    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH))
    event: Mapped[str] = mapped_column(String(EVENT_LENGTH))
    # The exact bytes that are signed and POSTed.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))
    claimed_by: Mapped[str | None] = mapped_column(String(WORKER_LENGTH))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When it became DELIVERED or FAILED (DELIVERED rows are deleted after a retention).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
