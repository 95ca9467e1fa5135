"""The ``schedule`` table: what to publish, when, and who is running it right now.

On the registry's declarative Base, created by migration ``0003_scheduling``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow


class ScheduleRow(Base):
    """One persisted schedule and its claim state (see :mod:`cloud.scheduler.store`)."""

    __tablename__ = "schedule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON)
    topic: Mapped[str] = mapped_column(String(1024))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    message_expiry: Mapped[int | None] = mapped_column(Integer)
    missed_policy: Mapped[str] = mapped_column(String(16))
    grace_seconds: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # None once a trigger can never fire again (a one-shot that ran).
    next_run: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # The due time a scheduler has claimed and is publishing; cleared when published. A claim
    # whose lease ran out (the process died) is taken over and published again.
    pending_run: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
