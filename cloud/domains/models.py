"""SQLAlchemy tables of the domain layer: functional requests and their outcomes, and the
schedules devices keep themselves.

Created by the Alembic revisions ``0002_commands`` (with the core's command tables) and
``0012_device_schedule``; they live on the registry's declarative Base so the registry's
migration test compares them too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
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


class DeviceScheduleRow(Base):
    """The schedule a device should keep (the last one an organisation set), the version last sent
    to it and the version it last reported holding."""

    __tablename__ = "device_schedule"

    device: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH))
    domain: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(64))
    # Milliseconds at setting: beyond a 32-bit integer.
    version: Mapped[int] = mapped_column(BigInteger)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_version: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_correlation: Mapped[str | None] = mapped_column(String(UUID_LENGTH))
    resends: Mapped[int] = mapped_column(Integer, default=0)
    reported_version: Mapped[int | None] = mapped_column(BigInteger)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
