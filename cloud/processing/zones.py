"""Days and months of a time zone other than the one processing stores them in, made from the
stored hours or quarter-hours (pure: no I/O; docs/PROCESSING.md).

Processing stores days and months of one zone (``GRIDWIRE_CONSUMPTION_TIME_ZONE``). A day of
another zone is the sum of the stored hours in it when its boundaries are whole UTC hours (every
zone whose offset is whole hours, DST days of 23 and 25 hours alike), or of the quarter-hours in
it when they are whole quarter-hours (India's +5:30, Nepal's +5:45). Consumption is a delta, so
the parts' sum is the register's value at the day's end less its value at its start: the same
value as a day computed from the register values, to within float rounding. Its quality is that
day's too: failed if a part names a rule, else estimated if the day's own first or last boundary
was estimated (an estimated boundary inside the day cancels out of the sum), else measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cloud.processing.intervals import Interval
from cloud.processing.rules import RULES
from cloud.processing.series import END_ESTIMATED, LINEAR, START_ESTIMATED, Quality
from cloud.processing.store import StoredConsumption

_NS = 1_000_000_000
STEPS = {Interval.HOUR: 3600 * _NS, Interval.QUARTER_HOUR: 900 * _NS}


def part_for(boundaries: Sequence[int]) -> Interval | None:
    """The stored interval that tiles every span between ``boundaries``: hours if all are whole
    UTC hours, else quarter-hours if all are whole quarter-hours, else None (an offset such as
    a local mean time's, in seconds)."""
    for part in (Interval.HOUR, Interval.QUARTER_HOUR):
        if all(b % STEPS[part] == 0 for b in boundaries):
            return part
    return None


def combine(start: int, end: int, parts: Sequence[StoredConsumption], part: Interval) -> StoredConsumption:
    """The consumption over [start, end) from the stored ``part`` intervals starting in it (any
    order; an absent one counts as missing)."""
    by_start = {one.start: one for one in parts if start <= one.start < end}
    expected = range(start, end, STEPS[part])
    found = [by_start[t] for t in expected if t in by_start]
    named = {rule for one in found for rule in one.rules}
    rules = tuple(rule for rule in RULES if rule in named)
    readings = sum(one.readings for one in found)
    unit = next((one.unit for one in found if one.unit), None)
    if len(found) < len(expected) or any(one.quality is Quality.MISSING or one.value is None for one in found):
        return StoredConsumption(start=start, value=None, unit=unit, quality=Quality.MISSING, rules=rules,
                                 method=None, readings=readings)
    first, last = found[0], found[-1]
    estimated = bool(_ends(first) & START_ESTIMATED) or bool(_ends(last) & END_ESTIMATED)
    quality = Quality.FAILED if rules else Quality.ESTIMATED if estimated else Quality.MEASURED
    return StoredConsumption(start=start, value=math.fsum(one.value for one in found), unit=unit, quality=quality,
                             rules=rules, method=LINEAR if estimated else None, readings=readings,
                             estimated_ends=(_ends(first) & START_ESTIMATED) | (_ends(last) & END_ESTIMATED))


def _ends(one: StoredConsumption) -> int:
    """Which of the part's boundaries were estimated; both if it was stored before that was kept
    and it was estimated at all."""
    if one.estimated_ends is not None:
        return one.estimated_ends
    return START_ESTIMATED | END_ESTIMATED if one.method else 0
