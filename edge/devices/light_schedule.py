"""A street light's own switching schedule, kept and run on the device (pure).

``set_light_schedule`` gives the light a versioned schedule: entries at a wall-clock ``HH:MM`` in a
time zone, or at ``sunrise``/``sunset`` plus an offset, computed on the device for its latitude
and longitude (:mod:`edge.sun`). The light switches itself when an entry's moment comes, so a
light whose link is down at sunset still switches. Time zones come from the system's zone data
(``zoneinfo``), not the tzdata package (Apache-2.0, kept off the edge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker.errors import Invalid
from edge.sun import sunrise, sunset

SOLAR = ("sunrise", "sunset")
MAX_ENTRIES = 50


class LightScheduleError(Invalid):
    """A schedule the light cannot hold."""


@dataclass(frozen=True, slots=True)
class LightEntry:
    at: str
    on: bool
    dim_level: int | None = None
    timezone: str | None = None
    offset_minutes: int = 0


@dataclass(frozen=True, slots=True)
class DeviceSchedule:
    version: int
    entries: tuple[LightEntry, ...]
    latitude: float | None = None
    longitude: float | None = None

    def moment(self, entry: LightEntry, day: date) -> datetime | None:
        """When ``entry`` fires on ``day`` (UTC), or None (no sunset that day at the pole)."""
        if entry.at in SOLAR:
            assert self.latitude is not None and self.longitude is not None
            event = (sunrise if entry.at == "sunrise" else sunset)(day, self.latitude, self.longitude)
            return None if event is None else event + timedelta(minutes=entry.offset_minutes)
        hours, minutes = (int(part) for part in entry.at.split(":"))
        zone = ZoneInfo(entry.timezone or "UTC")
        return datetime.combine(day, time(hours, minutes), tzinfo=zone).astimezone(ZoneInfo("UTC"))

    def due(self, after: datetime, until: datetime) -> list[tuple[datetime, LightEntry]]:
        """Every entry moment in (``after``, ``until``], in time order."""
        if until <= after:
            return []
        found = []
        day = after.date() - timedelta(days=1)
        while day <= until.date() + timedelta(days=1):
            for entry in self.entries:
                moment = self.moment(entry, day)
                if moment is not None and after < moment <= until:
                    found.append((moment, entry))
            day += timedelta(days=1)
        return sorted(found, key=lambda pair: pair[0])


def parse_schedule(params: Mapping[str, Any]) -> DeviceSchedule:
    """The command's parameters as a schedule; LightScheduleError names what is wrong."""
    version, entries = params.get("version"), params.get("entries")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise LightScheduleError(f"version must be a non-negative integer, not {version!r}")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
        raise LightScheduleError(f"entries must be a list of 1..{MAX_ENTRIES}")
    latitude, longitude = params.get("latitude"), params.get("longitude")
    parsed = []
    for number, raw in enumerate(entries, 1):
        if not isinstance(raw, Mapping):
            raise LightScheduleError(f"entry {number} must be an object")
        at, on, dim = raw.get("at"), raw.get("on"), raw.get("dimLevel")
        offset, zone = raw.get("offsetMinutes", 0), raw.get("timezone")
        if not isinstance(on, bool) or (dim is not None and (isinstance(dim, bool) or not isinstance(dim, int)
                                                             or not 0 <= dim <= 100)):
            raise LightScheduleError(f"entry {number}: on must be true or false and dimLevel 0..100")
        if isinstance(offset, bool) or not isinstance(offset, int) or not -720 <= offset <= 720:
            raise LightScheduleError(f"entry {number}: offsetMinutes must be -720..720")
        if at in SOLAR:
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (latitude, longitude)) \
                    or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):  # type: ignore[operator]
                raise LightScheduleError(f"entry {number}: {at} needs the light's latitude and longitude")
        else:
            try:
                hours, minutes = (int(part) for part in str(at).split(":"))
                ZoneInfo(zone or "UTC")
            except (ValueError, ZoneInfoNotFoundError):
                raise LightScheduleError(f"entry {number}: at must be HH:MM (with a known timezone), "
                                         f"sunrise or sunset, not {at!r} in {zone!r}") from None
            if not (0 <= hours < 24 and 0 <= minutes < 60):
                raise LightScheduleError(f"entry {number}: {at!r} is not a time of day")
        parsed.append(LightEntry(at=str(at), on=on, dim_level=dim, timezone=zone, offset_minutes=offset))
    return DeviceSchedule(version=version, entries=tuple(parsed),
                          latitude=float(latitude) if latitude is not None else None,
                          longitude=float(longitude) if longitude is not None else None)
