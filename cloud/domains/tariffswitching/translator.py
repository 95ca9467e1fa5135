"""Tariff switching: a weekly relay schedule to the generic ``set_relay_schedule`` (pure)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, field_validator

from cloud.domains.base import CommandSpec, Domain, Operation, OperationParams
from cloud.registry.functions import DeviceFunction

NAME = "tariffswitching"

Weekday = Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
ALL_DAYS: tuple[Weekday, ...] = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


class ScheduleEntry(OperationParams):
    """At ``time`` (HH:MM, local) on ``days``, put relay ``index`` in the ``high`` or low tariff."""

    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS), min_length=1)
    time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    index: int = Field(default=1, ge=1, le=16)
    high: StrictBool

    @field_validator("days")
    @classmethod
    def _unique(cls, days: list[Weekday]) -> list[Weekday]:
        return sorted(set(days), key=ALL_DAYS.index)


class SetSchedule(OperationParams):
    """A relay schedule: up to 50 switching moments a week."""

    entries: list[ScheduleEntry] = Field(min_length=1, max_length=50)


def set_schedule(params: SetSchedule) -> list[CommandSpec]:
    entries = sorted(({"days": e.days, "time": e.time, "index": e.index, "closed": e.high} for e in params.entries),
                     key=lambda e: (e["index"], e["time"]))
    return [CommandSpec("set_relay_schedule", {"entries": entries})]


DOMAIN = Domain(NAME, {
    "setSchedule": Operation("setSchedule", DeviceFunction.SET_TARIFF_SCHEDULE, SetSchedule, set_schedule),
})
