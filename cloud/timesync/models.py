"""The ``clock_drift`` table: how far each meter's clock was off, when, and whether it was set.

On the registry's declarative Base, created by migration ``0003_scheduling``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime


class ClockDriftRow(Base):
    """One drift measurement of one meter's clock against the concentrator's reference."""

    __tablename__ = "clock_drift"
    __table_args__ = (Index("ix_clock_drift_meter_measured", "meter_id", "measured_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    concentrator_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Meter clock minus reference: positive means the meter runs ahead.
    drift_seconds: Mapped[float] = mapped_column(Float)
    corrected: Mapped[bool] = mapped_column(Boolean)
