"""Processing of one meter's readings: judge each register value, store it, and recompute the
consumption of every interval it changes (docs/PROCESSING.md).

Everything it needs is read back from the store, so any number of processors may share the
readings (one meter at a time, under :class:`~cloud.processing.facts.MeterLocks`), and handling
the same readings again gives the same result.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo

from broker.schemas import MeterReading
from cloud.catalogue import Catalogue
from cloud.processing.facts import MeterFacts, MeterLocks
from cloud.processing.intervals import Interval, floor, following, starts, storable
from cloud.processing.rules import (REGISTER_DECREASED, RULES, SPIKE, RegisterPoint, Thresholds, clock_error, exchanged_between, is_register,
                                   limits_for, to_base, validate)
from cloud.processing.series import Consumption, Estimation, Series
from cloud.processing.store import NewPoint, ProcessingStore
from cloud.store.line_protocol import from_ns, to_ns

log = logging.getLogger(__name__)

# The intervals recomputed from the values of the days they lie in.
_WITHIN_DAYS = (Interval.QUARTER_HOUR, Interval.HOUR, Interval.DAY)
# The rules a value fails by its neighbours (judged again when the meter's exchanges change).
_NEIGHBOUR_RULES = frozenset((REGISTER_DECREASED, SPIKE))
_REJUDGE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """A register value taken from a reading, before it is judged."""

    prop: str
    t: int
    value: float
    unit: str
    meter_class: str | None
    reading_id: str
    free_running_seconds: float | None
    last_offset_seconds: float | None


class Processor:
    """Validates register values and keeps their consumption aggregates up to date."""

    def __init__(self, *, store: ProcessingStore, facts: MeterFacts, locks: MeterLocks, catalogue: Catalogue,
                 estimation: Estimation = Estimation(), thresholds: Thresholds = Thresholds(),
                 clock: Callable[[], int] = time.time_ns, zone: tzinfo = UTC) -> None:
        self._store = store
        self._zone = zone  # whose calendar days and months are
        self._facts = facts
        self._locks = locks
        self._catalogue = catalogue
        self._estimation = estimation
        self._thresholds = thresholds
        self._clock = clock
        self._max_gap = int(estimation.max_gap_seconds * 1e9)
        self.values = 0
        self.failed = 0
        self.failed_by_rule: Counter[str] = Counter()

    def register_values(self, readings: Sequence[MeterReading]) -> list[RegisterValue]:
        """The cumulative register values in ``readings`` (the catalogue says which properties are)."""
        found = []
        for reading in readings:
            physical = reading.meter_individual.physical_meter_type
            meter_class = physical.physical_meter_class if physical is not None else None
            clock = reading.clock
            for value in reading.property_values:
                definition = self._catalogue.property(value.property_id)
                if (definition is None or value.numerical_value is None or not is_register(definition)
                        or not storable(value.date)):
                    continue  # not a register, or a time no store holds (ingest refuses it too)
                unit = value.unit or definition.preferred_unit
                assert unit is not None  # a register has units
                try:
                    amount, base = to_base(value.numerical_value, unit)
                except ValueError:
                    continue  # ingest refuses such a unit; nothing to judge here
                if meter_class is None and len(definition.meter_classes) == 1:
                    meter_class = definition.meter_classes[0]
                found.append(RegisterValue(
                    prop=value.property_id, t=to_ns(value.date), value=amount, unit=base, meter_class=meter_class,
                    reading_id=str(reading.meter_reading_identifier),
                    free_running_seconds=None if clock is None else clock.free_running_seconds,
                    last_offset_seconds=None if clock is None else clock.last_offset_seconds))
        return found

    async def process(self, meter: str, readings: Sequence[MeterReading]) -> int:
        """Judge, store and aggregate the register values of one meter's readings; how many there were."""
        values = self.register_values(readings)
        if not values:
            return 0
        by_property: dict[str, list[RegisterValue]] = defaultdict(list)
        for value in values:
            by_property[value.prop].append(value)
        # Read before taking the meter's lock: on PostgreSQL the lock holds a pooled connection,
        # and a holder waiting for a second one could starve the pool.
        exchanges = await self._facts.exchanges(meter)
        drift = await self._facts.drift(meter, from_ns(max(v.t for v in values)))
        async with self._locks.hold(meter):
            for prop, these in by_property.items():
                await self._property(meter, prop, sorted(these, key=lambda v: v.t), exchanges, drift)
        return len(values)

    async def _property(self, meter: str, prop: str, values: list[RegisterValue], exchanges: list[int],
                        drift: tuple[int, float] | None) -> None:
        first, last = values[0].t, values[-1].t
        before, after = await self._store.neighbours(meter, prop, first, last)
        # The span whose boundary values the new values change: out to the measured values
        # around them, unless those are too far away to interpolate from.
        lo = before.t if before is not None and first - before.t <= self._max_gap else first
        hi = after.t if after is not None and after.t - last <= self._max_gap else last
        points = await self._store.window(meter, prop, *self._span(lo, hi))
        by_time = {p.t: p for p in points}
        now = self._clock()
        new: list[NewPoint] = []
        for value in values:
            meter_drift = drift[1] if drift is not None and drift[0] <= value.t else None
            error = clock_error(free_running_seconds=value.free_running_seconds,
                                last_offset_seconds=value.last_offset_seconds, meter_drift_seconds=meter_drift)
            failed = validate(t=value.t, value=value.value, limits=limits_for(value.meter_class, value.unit),
                              neighbours=points, exchanges=exchanges, now=now, thresholds=self._thresholds,
                              clock_error_seconds=error)
            point = RegisterPoint(t=value.t, value=value.value, failed=failed)
            by_time[value.t] = point
            points = sorted(by_time.values(), key=lambda p: p.t)
            new.append(NewPoint(point=point, unit=value.unit, reading_id=value.reading_id,
                                meter_class=value.meter_class))
            self.values += 1
            if failed:
                self.failed += 1
                self.failed_by_rule.update(failed)
                log.info("meter %s %s at %s failed %s (value %s %s)", meter, prop, from_ns(value.t).isoformat(),
                         ",".join(failed), value.value, value.unit)
        await self._recompute(meter, prop, lo, hi, points, new, exchanges, values[0].unit)

    def _span(self, lo: int, hi: int) -> tuple[int, int]:
        """The values read back to recompute the intervals whose boundaries lie in [lo, hi]."""
        # Quarter-hours, hours and days are recomputed from the days they lie in; a month from
        # its two ends and its days (unless an exchange lies in it: then from all its values).
        zone = self._zone
        start, end = floor(lo - 1, Interval.DAY, zone), following(floor(hi, Interval.DAY, zone), Interval.DAY, zone)
        # Widened to whole UTC hours: a local day of a half-hour zone ends inside one.
        return floor(start, Interval.HOUR), following(floor(end - 1, Interval.HOUR), Interval.HOUR)

    async def _recompute(self, meter: str, prop: str, lo: int, hi: int, points: list[RegisterPoint],
                         new: Sequence[NewPoint], exchanges: list[int], unit: str) -> None:
        """Write ``new`` and every interval with a boundary in [lo, hi], from ``points`` (the
        values of :meth:`_span`, ``new`` among them)."""
        zone = self._zone
        series = Series(points, exchanges=exchanges, estimation=self._estimation)
        changed: list[tuple[Interval, Consumption]] = [
            (interval, one) for interval in _WITHIN_DAYS for one in series.aggregate(lo - 1, hi, interval, zone=zone)]
        # Written before the months are made from them: killed in between, the message comes again.
        await self._store.write(meter, prop, points=new, consumption=changed, unit=unit)
        months = [await self._month(meter, prop, month, exchanges)
                  for month in starts(lo - 1, hi, Interval.MONTH, zone)]
        await self._store.write(meter, prop, points=(), consumption=[(Interval.MONTH, m) for m in months], unit=unit)

    async def exchanges_changed(self, meter: str, at: int) -> int:
        """After a meter exchange at ``at`` was recorded (or removed) for ``meter``: judge its
        stored values from there again and recompute the intervals they change, as if the
        exchanges had been known from the start; how many values changed verdict."""
        exchanges = await self._facts.exchanges(meter)
        props = await self._store.properties(meter)
        changed = 0
        async with self._locks.hold(meter):
            for prop in props:
                changed += await self._rejudge(meter, prop, at, exchanges)
        return changed

    async def _rejudge(self, meter: str, prop: str, at: int, exchanges: list[int]) -> int:
        """Judge ``prop``'s values after the last measured one before ``at`` again, in time order,
        each against the measured value before it (as values arriving in time order are), up to
        the first one at or after ``at`` that stays measured; then recompute as for new values."""
        anchor, _ = await self._store.neighbours(meter, prop, at, at)
        cursor = anchor.t if anchor is not None else -(2**62)
        previous: list[RegisterPoint] = [anchor] if anchor is not None else []
        rejudged: list[NewPoint] = []
        first = last = stop = None
        unit = None
        while stop is None:
            batch = await self._store.stored_after(meter, prop, cursor, _REJUDGE_BATCH)
            for stored in batch:
                point = stored.point
                kept = set(point.failed) - _NEIGHBOUR_RULES
                meter_class = stored.meter_class or self._only_class(prop)
                judged = validate(t=point.t, value=point.value, limits=limits_for(meter_class, stored.unit),
                                  neighbours=previous, exchanges=exchanges, now=point.t,
                                  thresholds=self._thresholds, clock_error_seconds=0.0)
                failed = tuple(rule for rule in RULES
                               if rule in kept or (rule in judged and rule in _NEIGHBOUR_RULES))
                first = point.t if first is None else first
                unit = unit or stored.unit
                if point.t >= at and not failed and not point.failed:
                    stop = point  # measured before and after: what follows is judged as it was
                    break
                last = point.t
                if failed != point.failed:
                    rejudged.append(NewPoint(point=RegisterPoint(point.t, point.value, failed), unit=stored.unit,
                                             reading_id=stored.reading_id, meter_class=stored.meter_class))
                if not failed:
                    previous = [RegisterPoint(point.t, point.value)]
            if len(batch) < _REJUDGE_BATCH:
                break
            cursor = batch[-1].point.t
        if first is None or unit is None:
            return 0
        lo = anchor.t if anchor is not None and first - anchor.t <= self._max_gap else first
        hi = last if last is not None else first
        if stop is not None and (last is None or stop.t - last <= self._max_gap):
            hi = stop.t
        by_time = {p.t: p for p in await self._store.window(meter, prop, *self._span(lo, hi))}
        by_time.update((new.point.t, new.point) for new in rejudged)
        points = sorted(by_time.values(), key=lambda p: p.t)
        if rejudged:
            log.info("meter %s %s: %d values judged again after the exchanges changed at %s", meter, prop,
                     len(rejudged), from_ns(at).isoformat())
        await self._recompute(meter, prop, lo, hi, points, rejudged, exchanges, unit)
        return len(rejudged)

    def _only_class(self, prop: str) -> str | None:
        definition = self._catalogue.property(prop)
        return definition.meter_classes[0] if definition is not None and len(definition.meter_classes) == 1 else None

    async def _month(self, meter: str, prop: str, start: int, exchanges: list[int]) -> Consumption:
        """A month's consumption: its ends' values less one another, its days' readings and rules."""
        end = following(start, Interval.MONTH, self._zone)
        edges, days = await self._store.month_parts(meter, prop, start, end)
        if edges and exchanged_between(exchanges, edges[0].t - 1, edges[-1].t):
            # The register restarts inside: shifting the new meter's values needs all of them.
            edges = await self._store.window(meter, prop, start, end + 1)
        series = Series(edges, exchanges=exchanges, estimation=self._estimation)
        return series.spanning(start, end, readings=sum(day.readings for day in days),
                               named={rule for day in days for rule in day.rules})
