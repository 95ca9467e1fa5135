"""The ``meter_exchange`` table: when a meter individual's physical meter was replaced.

On the registry's declarative Base, created by migration ``0013_meter_exchange``. Across an
exchange a cumulative register may go down (the new meter starts from its own value), so
processing neither flags that drop nor counts it as consumption.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow


class MeterExchangeRow(Base):
    """One exchange of the physical meter behind a meter individual (``meterIndividualId``)."""

    __tablename__ = "meter_exchange"
    __table_args__ = (Index("ix_meter_exchange_meter_at", "meter_id", "exchanged_at", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    exchanged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(512))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
