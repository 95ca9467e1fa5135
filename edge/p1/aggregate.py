"""Aggregates of a P1 meter's readings over fixed intervals (pure).

A DSMR meter sends a telegram every second. Forwarding each one costs the appliance a durable
write (an fsync) per second per meter, which wears out its flash. Summarised over an interval
(15 minutes by default, aligned to the clock), a meter gives one reading per interval: each
numeric property's last value as its ``numericalValue`` (so cumulative registers stay exact),
with its mean, minimum and maximum over the interval as ``statistics``, and the span the
samples covered as the reading's ``interval``. Text properties keep their last value. The
reading's time is its last sample's, so its id is the one that sample's reading would have had,
and the completeness ledger counts it in its own interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.lean import MeterReading, ReadingInterval, ValueStatistics


def interval_of(moment: datetime, period_s: float) -> int:
    """The start (epoch seconds) of the ``period_s`` interval holding ``moment``."""
    return int(math.floor(moment.astimezone(UTC).timestamp() / period_s) * period_s)


@dataclass
class _Series:
    """One numeric property's running statistics."""

    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    count: int = 0

    def add(self, value: float) -> None:
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.count += 1


@dataclass
class _Window:
    """One meter's interval being summarised."""

    slot: int
    first: MeterReading
    last: MeterReading
    series: dict[str, _Series] = field(default_factory=dict)
    samples: int = 0

    def add(self, reading: MeterReading) -> None:
        self.last = reading
        self.samples += 1
        for value in reading.property_values:
            if value.numerical_value is not None:
                self.series.setdefault(value.property_id, _Series()).add(value.numerical_value)

    def summary(self) -> MeterReading:
        values = []
        for value in self.last.property_values:
            stats = self.series.get(value.property_id) if value.numerical_value is not None else None
            if stats is not None:
                value = value.replace(statistics=ValueStatistics(
                    mean=stats.total / stats.count, min=stats.low, max=stats.high, count=stats.count))
            values.append(value)
        return self.last.replace(property_values=values,
                                 interval=ReadingInterval(start=self.first.reading_time, end=self.last.reading_time))


class Aggregator:
    """Summarises each meter's readings per interval; a reading of a new interval closes the last."""

    def __init__(self, *, period_s: float) -> None:
        if period_s <= 0:
            raise ValueError("the aggregation period must be positive")
        self.period_s = period_s
        self._open: dict[str, _Window] = {}

    def add(self, reading: MeterReading) -> list[MeterReading]:
        """Take one reading; return the summaries it closed (at most one, of the same meter)."""
        slot = interval_of(reading.reading_time, self.period_s)
        window = self._open.get(reading.meter_id)
        if window is not None and slot == window.slot:
            window.add(reading)
            return []
        if window is not None and slot < window.slot:
            return []  # a telegram older than the interval being summarised (a clock stepped back): dropped
        closed = [window.summary()] if window is not None else []
        fresh = _Window(slot=slot, first=reading, last=reading)
        fresh.add(reading)
        self._open[reading.meter_id] = fresh
        return closed

    def flush(self) -> list[MeterReading]:
        """Summaries of every open interval as they stand (at shutdown); the aggregator is empty after."""
        closed = [window.summary() for window in self._open.values()]
        self._open.clear()
        return closed

    @property
    def pending(self) -> int:
        """Readings held in open intervals."""
        return sum(window.samples for window in self._open.values())

