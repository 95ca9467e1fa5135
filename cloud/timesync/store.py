"""Meter clock drift history in the registry database."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.schemas.timesync import DriftReport
from cloud.timesync.models import ClockDriftRow


class DriftRecord(BaseModel):
    """One stored drift measurement, as the API returns it."""

    model_config = ConfigDict(populate_by_name=True)

    meter_id: str = Field(alias="meterId")
    concentrator_id: str | None = Field(alias="concentratorId")
    measured_at: AwareDatetime = Field(alias="measuredAt")
    drift_seconds: float = Field(alias="driftSeconds")
    corrected: bool


class DriftStore:
    """Writes and reads ``clock_drift`` rows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record(self, report: DriftReport, *, concentrator_id: str | None = None) -> None:
        async with self._sessions.begin() as session:
            session.add(ClockDriftRow(meter_id=report.meter_id, concentrator_id=concentrator_id,
                                      measured_at=report.measured_at, drift_seconds=report.drift_seconds,
                                      corrected=report.corrected))

    async def drift_history(self, meter_id: str, since: datetime | None = None, *,
                            limit: int = 10_000) -> list[DriftRecord]:
        """The drift measurements of ``meter_id`` from ``since`` on, oldest first."""
        query = select(ClockDriftRow).where(ClockDriftRow.meter_id == meter_id)
        if since is not None:
            query = query.where(ClockDriftRow.measured_at >= since)
        query = query.order_by(ClockDriftRow.measured_at, ClockDriftRow.id).limit(limit)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [DriftRecord(meter_id=r.meter_id, concentrator_id=r.concentrator_id, measured_at=r.measured_at,
                            drift_seconds=r.drift_seconds, corrected=r.corrected) for r in rows]


async def drift_history(engine: AsyncEngine, meter_id: str, since: datetime | None = None) -> list[DriftRecord]:
    """The drift history of one meter (a convenience over :meth:`DriftStore.drift_history`)."""
    return await DriftStore(engine).drift_history(meter_id, since)
