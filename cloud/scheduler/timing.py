"""When a schedule runs next: pure next-run computation for every trigger kind.

No I/O and no clock: every function takes ``now`` and answers with a timezone-aware UTC
datetime strictly after it, or None when the trigger will never fire again.

DST rules for daily wall-clock times (``DailyTrigger``):

- a time that does not exist on a spring-forward day (02:30 in Europe/Amsterdam on the last
  Sunday of March) runs at the same instant the clock shows after the jump (03:30), i.e. it is
  shifted forward by the gap, so the run is not lost;
- a time that exists twice on a fall-back day (02:30 on the last Sunday of October) runs
  once, at its first occurrence (``fold=0``).

Solar triggers use astral's sunrise/sunset for the location; days on which the sun does not
rise or set (polar day or night) are skipped.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import astral.sun
from astral import Observer
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

# How far a solar trigger searches for a day with the event before giving up (polar night).
SOLAR_SEARCH_DAYS = 370


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime; attach a timezone")
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


class IntervalTrigger(BaseModel):
    """Every ``every_seconds``, on the grid ``anchor + k * every`` (so restarts do not drift)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    kind: Literal["interval"] = "interval"
    every_seconds: int = Field(gt=0, le=366 * 86400, alias="everySeconds")
    anchor: UtcDatetime


class DailyTrigger(BaseModel):
    """At wall-clock ``times`` in ``timezone`` on the given ISO ``weekdays`` (1 = Monday)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    kind: Literal["daily"] = "daily"
    times: tuple[time, ...] = Field(min_length=1)
    timezone: str
    weekdays: frozenset[int] = frozenset(range(1, 8))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("times")
    @classmethod
    def _naive_times(cls, value: tuple[time, ...]) -> tuple[time, ...]:
        if any(t.tzinfo is not None for t in value):
            raise ValueError("daily times are wall-clock times in `timezone`; give them without an offset")
        return tuple(sorted(set(value)))

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, value: frozenset[int]) -> frozenset[int]:
        if not value or not value <= set(range(1, 8)):
            raise ValueError("weekdays must be a non-empty subset of 1..7 (ISO, Monday = 1)")
        return value


class OnceTrigger(BaseModel):
    """Once, at an absolute instant."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    kind: Literal["once"] = "once"
    at: UtcDatetime


class SolarEvent(StrEnum):
    SUNRISE = "sunrise"
    SUNSET = "sunset"


class SolarTrigger(BaseModel):
    """At sunrise or sunset at a location, shifted by ``offset_seconds`` (negative = before)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    kind: Literal["solar"] = "solar"
    event: SolarEvent
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    offset_seconds: int = Field(default=0, ge=-12 * 3600, le=12 * 3600, alias="offsetSeconds")


Trigger = Annotated[IntervalTrigger | DailyTrigger | OnceTrigger | SolarTrigger, Field(discriminator="kind")]


class TriggerSpec(BaseModel):
    """A wrapper so a trigger can be parsed from JSON on its own (the DB column, the API)."""

    trigger: Trigger


def parse_trigger(data: dict[str, object]) -> IntervalTrigger | DailyTrigger | OnceTrigger | SolarTrigger:
    """A trigger from its JSON form (as stored in the ``schedule.trigger`` column)."""
    return TriggerSpec.model_validate({"trigger": data}).trigger


def next_run(trigger: IntervalTrigger | DailyTrigger | OnceTrigger | SolarTrigger,
             now: datetime) -> datetime | None:
    """The first instant strictly after ``now`` at which ``trigger`` fires, in UTC; None if never."""
    now = _utc(now)
    match trigger:
        case IntervalTrigger():
            return _next_interval(trigger, now)
        case DailyTrigger():
            return _next_daily(trigger, now)
        case OnceTrigger():
            return trigger.at if trigger.at > now else None
        case SolarTrigger():
            return _next_solar(trigger, now)
    raise TypeError(f"unknown trigger {trigger!r}")


def _next_interval(trigger: IntervalTrigger, now: datetime) -> datetime:
    every = timedelta(seconds=trigger.every_seconds)
    if now < trigger.anchor:
        return trigger.anchor
    # Integer arithmetic on microseconds: no float rounding can land the result on or before now.
    steps = (now - trigger.anchor) // every + 1
    return trigger.anchor + steps * every


def wall_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant a wall clock in ``zone`` shows ``at`` on ``day`` (gap: shifted forward; fold: first)."""
    # fold=0 reads a time in a gap with the offset from before the jump, which lands on the
    # wall time shifted forward by the gap, and picks the first of two repeated times.
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


def _next_daily(trigger: DailyTrigger, now: datetime) -> datetime | None:
    zone = ZoneInfo(trigger.timezone)
    start = now.astimezone(zone).date() - timedelta(days=1)
    # Take the minimum rather than the first: a time shifted out of a DST gap (02:30 -> 03:30)
    # can land after a later wall time on the same day (03:15).
    candidates = [wall_to_utc(day, at, zone)
                  for day in (start + timedelta(days=n) for n in range(9))
                  if day.isoweekday() in trigger.weekdays for at in trigger.times]
    return min((c for c in candidates if c > now), default=None)


def solar_event(trigger: SolarTrigger, day: date) -> datetime | None:
    """The trigger's instant on ``day`` (the event plus offset), in UTC; None if no such event that day."""
    observer = Observer(latitude=trigger.latitude, longitude=trigger.longitude)
    func = astral.sun.sunrise if trigger.event is SolarEvent.SUNRISE else astral.sun.sunset
    try:
        event = func(observer, date=day, tzinfo=UTC)
    except ValueError:
        return None  # the sun does not rise or set on that day at that latitude
    return event + timedelta(seconds=trigger.offset_seconds)


def _next_solar(trigger: SolarTrigger, now: datetime) -> datetime | None:
    # astral's "day" is the UTC date; start two days back so a large negative offset or a
    # location far from Greenwich cannot make us skip today's event.
    start = now.date() - timedelta(days=2)
    for n in range(SOLAR_SEARCH_DAYS):
        candidate = solar_event(trigger, start + timedelta(days=n))
        if candidate is not None and candidate > now:
            return candidate
    return None


class MissedRunPolicy(StrEnum):
    """What to do with a run whose time passed while no scheduler was running."""

    RUN_ONCE = "RUN_ONCE"  # run it once, late, then continue from now (no catch-up burst)
    SKIP = "SKIP"          # do not run it; continue from now


def plan_due(trigger: IntervalTrigger | DailyTrigger | OnceTrigger | SolarTrigger, *, due: datetime,
             now: datetime, policy: MissedRunPolicy, grace: timedelta) -> tuple[bool, datetime | None]:
    """For a run due at ``due`` seen at ``now``: (run it?, the next run after it).

    A run less than ``grace`` late is on time and always runs; a later one follows ``policy``.
    The next run is strictly after ``now``, so however long the outage, at most one late run.
    """
    due, now = _utc(due), _utc(now)
    if now < due:
        raise ValueError(f"run due at {due.isoformat()} is not due yet at {now.isoformat()}")
    on_time = now - due <= grace
    run = on_time or policy is MissedRunPolicy.RUN_ONCE
    return run, next_run(trigger, now)
