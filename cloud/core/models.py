"""SQLAlchemy tables of the command lifecycle: commands and device locks.

Created only by the Alembic revision ``0002_commands`` (with the domains' functional requests,
:mod:`cloud.domains.models`); they live on the registry's declarative Base so the registry's
migration test compares them too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow

UUID_LENGTH = 36
STATUS_LENGTH = 16


class CommandRow(Base):
    """One generic command for one device and where it is in its life."""

    __tablename__ = "command"
    # The pump's sweep (open commands past their time-to-live, oldest first) reads a few index
    # entries instead of every open command; its leading column serves lookups by status too.
    # Added by revision ``0004_command_sweep_index``.
    __table_args__ = (Index("ix_command_status_expires_at", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    # The functional request this command is part of (what the application holds).
    correlation_id: Mapped[str] = mapped_column(String(UUID_LENGTH), index=True)
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH))
    device: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    domain: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=4)
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When a queued command may be sent (later than created_at after a transient failure).
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)


class DeviceLockRow(Base):
    """The one command in flight to a device whose protocol takes one at a time (DLMS)."""

    __tablename__ = "command_device_lock"

    device: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    command_id: Mapped[str] = mapped_column(String(UUID_LENGTH))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
