"""Scriptable meter sources for poller tests (real objects implementing MeterSource)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from broker.schemas import MeterReading, OperationalPropertyRef, PropertyValue
from broker.schemas.meter_reading import MeterIndividual


class Watch:
    """A condition the sources and the sink notify, so tests wait for states, not for time."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()

    async def notify(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with self._condition:
            await asyncio.wait_for(self._condition.wait_for(predicate), timeout)


class Gauge:
    """Counts reads in progress per bus and remembers the most seen at once."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def enter(self, bus: str) -> None:
        self.active[bus] = self.active.get(bus, 0) + 1
        self.peak[bus] = max(self.peak.get(bus, 0), self.active[bus])

    def leave(self, bus: str) -> None:
        self.active[bus] -= 1


def reading(meter_id: str, at: datetime) -> MeterReading:
    ref = OperationalPropertyRef(property_id="OBIS_1.8.0")
    return MeterReading(
        meter_reading_identifier=MeterReading.derive_id(meter_id, at), reading_time=at,
        property_values=[PropertyValue(date=at, numerical_value=1.0, unit="kWh", operational_property=ref)],
        meter_individual=MeterIndividual(meter_individual_id=meter_id),
    )


class ScriptedSource:
    """A meter whose reads take ``work`` seconds and raise ``failure`` while it is set."""

    protocol = "test"

    def __init__(self, meter_id: str, *, watch: Watch, bus: str = "bus-a", interval: float = 0.02,
                 work: float = 0.0, gauge: Gauge | None = None) -> None:
        self._meter_id = meter_id
        self._bus = bus
        self._interval = interval
        self.watch = watch
        self.work = work
        self.gauge = gauge
        self.failure: BaseException | None = None
        self.attempts: list[datetime] = []
        self.failures = 0

    @property
    def meter_id(self) -> str:
        return self._meter_id

    @property
    def bus(self) -> str:
        return self._bus

    @property
    def interval(self) -> float:
        return self._interval

    async def read(self) -> list[MeterReading]:
        now = datetime.now(UTC)
        self.attempts.append(now)
        if self.gauge is not None:
            self.gauge.enter(self._bus)
        try:
            if self.work:
                await asyncio.sleep(self.work)  # simulated time on the wire
            if self.failure is not None:
                self.failures += 1
                raise self.failure
            return [reading(self._meter_id, now)]
        finally:
            if self.gauge is not None:
                self.gauge.leave(self._bus)
            await self.watch.notify()


class RecordingSink:
    """The sink: keeps readings per meter and wakes the watch."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.readings: dict[str, list[MeterReading]] = {}

    async def __call__(self, reading: MeterReading) -> None:
        self.readings.setdefault(reading.meter_id, []).append(reading)
        await self.watch.notify()

    def count(self, meter_id: str) -> int:
        return len(self.readings.get(meter_id, []))
