"""The aggregation intervals (15 minutes, hour, day, month), in nanoseconds since the epoch.

Pure: no I/O. Quarter-hours and hours are on the UTC grid; days and months follow the calendar
of a time zone (UTC unless given), so a local day may last 23 or 25 hours. Every boundary of a
longer interval is a boundary of the 15-minute one (in zones whose offsets are whole quarter-hours),
so a month's consumption and its quarter-hours' meet at the same register values.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

_NS = 1_000_000_000
_FIXED = {"15min": 900 * _NS, "hour": 3600 * _NS}


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


def floor(t: int, interval: Interval, zone: tzinfo = UTC) -> int:
    """The start of the interval holding the instant ``t`` (ns since the epoch)."""
    step = _FIXED.get(interval.value)
    if step is not None:
        return t - t % step
    local = datetime.fromtimestamp(t // _NS, zone)
    day = 1 if interval is Interval.MONTH else local.day
    return _ns(datetime(local.year, local.month, day, tzinfo=zone))


def following(start: int, interval: Interval, zone: tzinfo = UTC) -> int:
    """The start of the interval after the one starting at ``start``."""
    step = _FIXED.get(interval.value)
    if step is not None:
        return start + step
    local = datetime.fromtimestamp(start // _NS, zone)
    if interval is Interval.DAY:
        # Noon of the next calendar day is never skipped by a clock change; its midnight follows.
        nxt = datetime(local.year, local.month, local.day, 12) + timedelta(days=1)
        return _ns(datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone))
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return _ns(datetime(year, month, 1, tzinfo=zone))


def starts(first: int, last: int, interval: Interval, zone: tzinfo = UTC) -> Iterator[int]:
    """Starts of the intervals from the one holding ``first`` to the one holding ``last``."""
    start = floor(first, interval, zone)
    while start <= last:
        yield start
        start = following(start, interval, zone)


def count(first: int, end: int, interval: Interval) -> int:
    """About how many intervals start in [first, end) (bounds an answer's size: a day is taken
    as 24 hours, a month as 28 days)."""
    step = _FIXED.get(interval.value) or (86_400 * _NS if interval is Interval.DAY else 28 * 86_400 * _NS)
    return max(0, -(-(end - first) // step))


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * _NS
