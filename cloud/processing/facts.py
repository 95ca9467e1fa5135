"""What processing reads from the registry database: meter exchanges, meters' clock drift, and a
lock per meter so that two processing consumers never recompute one meter's intervals at once."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cloud.processing.models import MeterExchangeRow
from cloud.store.line_protocol import to_ns
from cloud.timesync.models import ClockDriftRow

# The first key of processing's PostgreSQL advisory locks (the second is the meter's hash).
_LOCK_SPACE = 1616


class MeterFacts:
    """Meter exchanges and clock drift, read from the registry's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record_exchange(self, meter_id: str, exchanged_at: datetime, *, note: str | None = None) -> bool:
        """Record that ``meter_id``'s physical meter was replaced at ``exchanged_at``; False if
        that exchange was recorded already (recording it again changes nothing)."""
        try:
            async with self._sessions.begin() as session:
                session.add(MeterExchangeRow(meter_id=meter_id, exchanged_at=exchanged_at, note=note))
        except IntegrityError:
            return False
        return True

    async def remove_exchange(self, meter_id: str, exchanged_at: datetime) -> bool:
        """Remove an exchange recorded wrongly; False if there was none at that time."""
        async with self._sessions.begin() as session:
            row = (await session.scalars(select(MeterExchangeRow).where(
                MeterExchangeRow.meter_id == meter_id, MeterExchangeRow.exchanged_at == exchanged_at))).first()
            if row is None:
                return False
            await session.delete(row)
        return True

    async def exchange_rows(self, meter_id: str) -> list[MeterExchangeRow]:
        """The meter's recorded exchanges, oldest first."""
        query = (select(MeterExchangeRow).where(MeterExchangeRow.meter_id == meter_id)
                 .order_by(MeterExchangeRow.exchanged_at))
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def exchanges(self, meter_id: str) -> list[int]:
        """The meter's exchanges (ns since the epoch), oldest first."""
        query = (select(MeterExchangeRow.exchanged_at).where(MeterExchangeRow.meter_id == meter_id)
                 .order_by(MeterExchangeRow.exchanged_at))
        async with self._sessions() as session:
            return [to_ns(at) for at in (await session.scalars(query)).all()]

    async def drift(self, meter_id: str, at: datetime) -> tuple[int, float] | None:
        """(when, seconds) of the meter's last clock drift measured by ``at``, 0 s if it was corrected."""
        query = (select(ClockDriftRow).where(ClockDriftRow.meter_id == meter_id, ClockDriftRow.measured_at <= at)
                 .order_by(ClockDriftRow.measured_at.desc(), ClockDriftRow.id.desc()).limit(1))
        async with self._sessions() as session:
            row = (await session.scalars(query)).first()
        if row is None:
            return None
        return to_ns(row.measured_at), 0.0 if row.corrected else row.drift_seconds


class MeterLocks:
    """One meter at a time: an asyncio lock within the process and, on PostgreSQL, an advisory
    lock across processes (a killed process's connection closes and its locks go with it).
    On SQLite there is one process, so the local lock is enough."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._shared = engine.dialect.name == "postgresql"
        self._local: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, meter_id: str) -> AsyncIterator[None]:
        lock = self._local.get(meter_id)
        if lock is None:
            lock = self._local[meter_id] = asyncio.Lock()
        async with lock:
            if not self._shared:
                yield
                return
            async with self._engine.connect() as connection:
                key = (await connection.execute(select(func.hashtext(meter_id)))).scalar_one()
                await connection.execute(text("SELECT pg_advisory_lock(:space, :key)"),
                                         {"space": _LOCK_SPACE, "key": key})
                await connection.commit()
                try:
                    yield
                finally:
                    await connection.execute(text("SELECT pg_advisory_unlock(:space, :key)"),
                                             {"space": _LOCK_SPACE, "key": key})
                    await connection.commit()
