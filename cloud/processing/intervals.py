"""The aggregation intervals (15 minutes, hour, day, month) on the UTC calendar, in nanoseconds.

Pure: no I/O. Every boundary of a longer interval is a boundary of the 15-minute one, so a
month's consumption and its quarter-hours' meet at the same register values.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum

_NS = 1_000_000_000
_FIXED = {"15min": 900 * _NS, "hour": 3600 * _NS, "day": 86_400 * _NS}


class Interval(StrEnum):
    """An aggregation interval, by the name the API takes (``?interval=day``)."""

    QUARTER_HOUR = "15min"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


INTERVALS: tuple[Interval, ...] = tuple(Interval)

# The years whose intervals InfluxDB can hold (int64 nanoseconds: 1677-09-21 to 2262-04-11).
FIRST_YEAR, LAST_YEAR = 1678, 2261


def storable(moment: datetime) -> bool:
    """Whether ``moment`` and its month lie where InfluxDB can store them."""
    return FIRST_YEAR <= moment.year <= LAST_YEAR


def floor(t: int, interval: Interval) -> int:
    """The start of the interval holding the instant ``t`` (ns since the epoch)."""
    step = _FIXED.get(interval.value)
    if step is not None:
        return t - t % step
    moment = datetime.fromtimestamp(t // _NS, UTC)
    return _ns(datetime(moment.year, moment.month, 1, tzinfo=UTC))


def following(start: int, interval: Interval) -> int:
    """The start of the interval after the one starting at ``start``."""
    step = _FIXED.get(interval.value)
    if step is not None:
        return start + step
    moment = datetime.fromtimestamp(start // _NS, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return _ns(datetime(year, month, 1, tzinfo=UTC))


def starts(first: int, last: int, interval: Interval) -> Iterator[int]:
    """Starts of the intervals from the one holding ``first`` to the one holding ``last``."""
    start = floor(first, interval)
    while start <= last:
        yield start
        start = following(start, interval)


def count(first: int, end: int, interval: Interval) -> int:
    """How many intervals start in [first, end) once ``first`` is floored (bounds an answer's size)."""
    step = _FIXED.get(interval.value)
    if step is not None:
        return max(0, -(-(end - floor(first, interval)) // step))
    return sum(1 for _ in starts(first, end - 1, interval)) if end > first else 0


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * _NS
