"""SQLAlchemy table of the domain layer: functional requests and their outcomes.

Created by the Alembic revision ``0002_commands`` (with the core's command tables); it lives
on the registry's declarative Base so the registry's migration test compares it too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.core.models import STATUS_LENGTH, UUID_LENGTH
from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow


class FunctionalRequestRow(Base):
    """A functional request an application made, and its result once every command is done."""

    __tablename__ = "functional_request"

    correlation_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    device: Mapped[str] = mapped_column(String(ID_LENGTH))
    domain: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(64))
    command_ids: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
