"""Weekly switching schedules kept on a device: which relay goes where, when (pure).

A tariff schedule (``set_relay_schedule``) is a list of switch points: on these weekdays at
HH:MM (the device's local time), put relay ``index`` closed or open. The concentrator turns
the command's entries into switch points and writes them to the device (DLMS single action
schedules, a Modbus relay's schedule registers); the simulators keep them and switch on their
own when a point's time comes, so the relay follows the schedule with the link down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from broker.errors import Invalid

WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MINUTES_A_DAY = 24 * 60
WEEK = timedelta(days=7)


class ScheduleError(Invalid):
    """A schedule entry the device cannot hold."""


@dataclass(frozen=True, slots=True, order=True)
class SwitchPoint:
    """At ``minute`` after midnight on ``weekday`` (1 = Monday .. 7 = Sunday), set relay ``index``."""

    weekday: int
    minute: int
    index: int
    closed: bool

    def __post_init__(self) -> None:
        if not 1 <= self.weekday <= 7:
            raise ScheduleError(f"weekday must be 1..7, not {self.weekday}")
        if not 0 <= self.minute < MINUTES_A_DAY:
            raise ScheduleError(f"minute of the day must be 0..1439, not {self.minute}")
        if not 1 <= self.index <= 16:
            raise ScheduleError(f"relay index must be 1..16, not {self.index}")

    def time_text(self) -> str:
        return f"{self.minute // 60:02d}:{self.minute % 60:02d}"


def switch_points(entries: Sequence[Mapping[str, Any]]) -> list[SwitchPoint]:
    """The command's entries (``days``, ``time`` HH:MM, ``index``, ``closed``) as sorted switch points.

    Two entries that put one relay both ways at the same moment are refused (the device could
    not know which one wins)."""
    if not isinstance(entries, list | tuple) or not entries:
        raise ScheduleError("entries must be a non-empty list")
    points: set[SwitchPoint] = set()
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, Mapping):
            raise ScheduleError(f"entry {number} must be an object")
        days = entry.get("days", list(WEEKDAYS))
        if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
            raise ScheduleError(f"entry {number}: days must be a non-empty list of {', '.join(WEEKDAYS)}")
        time, closed, index = entry.get("time"), entry.get("closed"), entry.get("index", 1)
        try:
            hours, minutes = (int(part) for part in str(time).split(":"))
        except ValueError:
            raise ScheduleError(f"entry {number}: time must be HH:MM, not {time!r}") from None
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ScheduleError(f"entry {number}: time must be HH:MM, not {time!r}")
        if not isinstance(closed, bool) or isinstance(index, bool) or not isinstance(index, int):
            raise ScheduleError(f"entry {number}: closed must be true or false and index an integer")
        for day in days:
            points.add(SwitchPoint(WEEKDAYS.index(day) + 1, hours * 60 + minutes, index, closed))
    moments = {(p.weekday, p.minute, p.index) for p in points}
    if len(moments) != len(points):
        raise ScheduleError("an entry switches a relay both ways at the same moment")
    return sorted(points)


def entries_of(points: Iterable[SwitchPoint]) -> list[dict[str, Any]]:
    """Switch points back as entries, one per (time, index, closed) with its days: what a device holds."""
    grouped: dict[tuple[int, int, bool], list[str]] = {}
    for point in sorted(points):
        grouped.setdefault((point.minute, point.index, point.closed), []).append(WEEKDAYS[point.weekday - 1])
    return [{"days": days, "time": f"{minute // 60:02d}:{minute % 60:02d}", "index": index, "closed": closed}
            for (minute, index, closed), days in sorted(grouped.items())]


def occurrence(point: SwitchPoint, week_of: datetime) -> datetime:
    """The moment ``point`` falls on in the week (Monday 00:00 based) that holds ``week_of``."""
    midnight = week_of.replace(hour=0, minute=0, second=0, microsecond=0)
    monday = midnight - timedelta(days=week_of.isoweekday() - 1)
    return monday + timedelta(days=point.weekday - 1, minutes=point.minute)


def due(points: Iterable[SwitchPoint], after: datetime, until: datetime) -> list[tuple[datetime, SwitchPoint]]:
    """Every switching moment in (``after``, ``until``], in time order (all of them, however long the gap)."""
    if until <= after:
        return []
    found: list[tuple[datetime, SwitchPoint]] = []
    for point in points:
        moment = occurrence(point, after)
        if moment <= after:
            moment += WEEK
        while moment <= until:
            found.append((moment, point))
            moment += WEEK
    return sorted(found)


@dataclass
class SwitchingClock:
    """A device's stored schedule and how far it has switched: ``settle(now)`` gives the switches
    that came due since the last call (at most the latest per relay matters for its state)."""

    points: list[SwitchPoint] = field(default_factory=list)
    applied_until: datetime | None = None
    switched: list[tuple[datetime, SwitchPoint]] = field(default_factory=list)

    def store(self, points: Iterable[SwitchPoint], now: datetime) -> None:
        """Replace the schedule; it applies from ``now`` on (switch points already past do not fire)."""
        self.points = sorted(points)
        self.applied_until = now

    def settle(self, now: datetime) -> dict[int, bool]:
        """Relay index -> state, for every relay a switch point came due for since the last call."""
        if self.applied_until is None or now <= self.applied_until:
            return {}
        states: dict[int, bool] = {}
        for moment, point in due(self.points, self.applied_until, now):
            states[point.index] = point.closed
            self.switched.append((moment, point))
        self.applied_until = now
        return states
