"""Consumption from a register series: boundary values, estimation across gaps, interval deltas.

Pure: no I/O. Consumption over an interval is the register's value at its end minus its value at
its start (a delta, never a mean). A boundary's value is the measured value at that instant, or
else a linear interpolation between the measured values around it (an estimate, unless both lie
within the boundary tolerance), or none when the gap is longer than the longest one estimated.
Readings that failed validation are left out of the values and named in the quality.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING

from cloud.processing.intervals import Interval, following, starts
from cloud.processing.rules import RULES, RegisterPoint, exchanged_between

if TYPE_CHECKING:
    from cloud.settings import ProcessingOptions

LINEAR = "linear_interpolation"
_NS = 1_000_000_000


class Quality(StrEnum):
    """How a consumption value came about, best first."""

    MEASURED = "measured"
    ESTIMATED = "estimated"
    FAILED = "failed_validation"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Estimation:
    """How far estimation reaches: gaps up to ``max_gap_seconds`` are interpolated; a boundary
    with measured values within ``tolerance_seconds`` on both sides counts as measured."""

    max_gap_seconds: float = 7 * 86_400.0
    tolerance_seconds: float = 30.0

    @classmethod
    def of(cls, options: ProcessingOptions) -> Estimation:
        return cls(max_gap_seconds=options.max_gap_seconds, tolerance_seconds=options.tolerance_seconds)


@dataclass(frozen=True, slots=True)
class Consumption:
    """One interval's consumption (base unit), its quality, the rules failed in it, the estimation
    method if a boundary was estimated, and how many measured readings fell in it."""

    start: int
    end: int
    value: float | None
    quality: Quality
    rules: tuple[str, ...]
    method: str | None
    readings: int
    # Which boundary values were estimated: START_ESTIMATED | END_ESTIMATED (a day of another
    # zone made from hours is estimated only if its own two ends are).
    estimated_ends: int = 0


START_ESTIMATED, END_ESTIMATED = 1, 2


class Series:
    """A register's points in time order (measured and failed) with the meter's exchanges.

    Across an exchange the new meter's values are shifted to continue the old one's, so a delta
    spanning it counts both meters' consumption (none between the old meter's last reading and
    the new one's first).
    """

    def __init__(self, points: Sequence[RegisterPoint], *, exchanges: Sequence[int] = (),
                 estimation: Estimation = Estimation()) -> None:
        self._max_gap = int(estimation.max_gap_seconds * _NS)
        self._tolerance = int(estimation.tolerance_seconds * _NS)
        self.times: list[int] = []
        self.values: list[float] = []
        self._failed_times: list[int] = []
        self._failed_rules: list[tuple[str, ...]] = []
        offset = 0.0
        for point in points:
            if not point.measured:
                self._failed_times.append(point.t)
                self._failed_rules.append(point.failed)
                continue
            if self.times and exchanges and exchanged_between(exchanges, self.times[-1], point.t):
                offset = self.values[-1] - point.value
            self.times.append(point.t)
            self.values.append(point.value + offset)

    def at(self, b: int) -> tuple[float, bool] | None:
        """The register's value at ``b`` and whether it is estimated; None if it cannot be known."""
        times = self.times
        i = bisect.bisect_left(times, b)
        if i < len(times) and times[i] == b:
            return self.values[i], False
        if i == 0 or i == len(times):
            return None
        t0, t1 = times[i - 1], times[i]
        if t1 - t0 > self._max_gap:
            return None
        v0, v1 = self.values[i - 1], self.values[i]
        value = v0 + (v1 - v0) * (b - t0) / (t1 - t0)
        return value, not (b - t0 <= self._tolerance and t1 - b <= self._tolerance)

    def consumption(self, start: int, end: int) -> Consumption:
        """The consumption over [start, end)."""
        readings = bisect.bisect_left(self.times, end) - bisect.bisect_left(self.times, start)
        lo = bisect.bisect_left(self._failed_times, start)
        hi = bisect.bisect_right(self._failed_times, end)
        named = {rule for rules in self._failed_rules[lo:hi] for rule in rules}
        return self.spanning(start, end, readings=readings, named=named)

    def spanning(self, start: int, end: int, *, readings: int, named: set[str]) -> Consumption:
        """The consumption over [start, end) from the values at its ends, given how many measured
        readings lie in it and the rules failed in [start, end] (a month from its days)."""
        first, last = self.at(start), self.at(end)
        rules = tuple(rule for rule in RULES if rule in named)
        if first is None or last is None:
            return Consumption(start, end, None, Quality.MISSING, rules, None, readings)
        estimated = first[1] or last[1]
        quality = Quality.FAILED if rules else Quality.ESTIMATED if estimated else Quality.MEASURED
        ends = (START_ESTIMATED if first[1] else 0) | (END_ESTIMATED if last[1] else 0)
        return Consumption(start, end, last[0] - first[0], quality, rules, LINEAR if estimated else None, readings,
                           ends)

    def aggregate(self, first: int, last: int, interval: Interval, *, zone: tzinfo = UTC) -> list[Consumption]:
        """The consumption of every ``interval`` from the one holding ``first`` to the one holding
        ``last`` (days and months of ``zone``'s calendar)."""
        return [self.consumption(start, following(start, interval, zone))
                for start in starts(first, last, interval, zone)]
