"""Public lighting: functional operations to generic commands for a light controller (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, StrictBool, model_validator

from cloud.domains.base import CommandSpec, Domain, NoParams, Operation, OperationParams
from cloud.registry.functions import DeviceFunction

NAME = "publiclighting"
# The relay that switches the lamp on a single-output controller.
LAMP_RELAY = 1


class SetLight(OperationParams):
    """Switch the light on or off, optionally at a dim level (percent)."""

    on: StrictBool
    dim_level: int | None = Field(default=None, alias="dimLevel", ge=0, le=100)


def set_light(params: SetLight) -> list[CommandSpec]:
    commands = [CommandSpec("set_relay", {"index": LAMP_RELAY, "closed": params.on})]
    if params.on and params.dim_level is not None:
        commands.append(CommandSpec("set_dim_level", {"percent": params.dim_level}))
    return commands


def summarise_set_light(results: Mapping[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The light's state after a setLight: relays as ``set_relay`` left them, dim level as
    ``set_dim_level`` left it. The core sends a request's commands concurrently, so each
    answer is a snapshot that may predate the other command; each knows its own field."""
    relay = results.get("set_relay") or {}
    dim = results.get("set_dim_level") or {}
    state = {**dim, **relay}
    if "dimLevel" in dim:
        state["dimLevel"] = dim["dimLevel"]
    relays = state.get("relays")
    if isinstance(relays, list) and isinstance(state.get("dimLevel"), int):
        state["on"] = any(r.get("closed") for r in relays if isinstance(r, dict)) and state["dimLevel"] > 0
    return state


def get_status(_params: NoParams) -> list[CommandSpec]:
    return [CommandSpec("get_light_status")]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


# A schedule entry's moment ("HH:MM", "sunrise" or "sunset") and an IANA time zone: shared by the
# schedules the cloud runs (schedules.py) and those the device keeps (below).
ScheduleTime = Annotated[str, Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|sunrise|sunset)$")]
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


class DeviceScheduleEntry(OperationParams):
    """Switch at ``at``: ``"HH:MM"`` in ``timezone``, or ``"sunrise"``/``"sunset"`` + ``offsetMinutes``."""

    action: SetLight
    at: ScheduleTime
    timezone: TimeZoneName | None = None
    offset_minutes: int = Field(default=0, ge=-720, le=720, alias="offsetMinutes")

    @model_validator(mode="after")
    def _consistent(self) -> DeviceScheduleEntry:
        solar = self.at in ("sunrise", "sunset")
        if solar and self.timezone is not None:
            raise ValueError("a sunrise/sunset entry takes no timezone (the light's location decides)")
        if not solar and (self.timezone is None or self.offset_minutes):
            raise ValueError(f"an absolute time ({self.at}) needs a timezone and takes no offset")
        return self


class DeviceSchedule(OperationParams):
    """A light's schedule to keep and run on the device, with its version and location."""

    version: int = Field(ge=0)
    entries: list[DeviceScheduleEntry] = Field(min_length=1, max_length=50)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _located(self) -> DeviceSchedule:
        if any(e.at in ("sunrise", "sunset") for e in self.entries) and (self.latitude is None or self.longitude is None):
            raise ValueError("a sunrise/sunset entry needs the light's location (latitude/longitude) in the registry")
        return self


def set_device_schedule(params: DeviceSchedule) -> list[CommandSpec]:
    entries = [{"at": e.at, "on": e.action.on, **({"dimLevel": e.action.dim_level} if e.action.dim_level is not None
                                                    else {}),
                **({"timezone": e.timezone} if e.timezone else {}), "offsetMinutes": e.offset_minutes}
               for e in params.entries]
    location = {"latitude": params.latitude, "longitude": params.longitude} if params.latitude is not None else {}
    return [CommandSpec("set_light_schedule", {"version": params.version, "entries": entries, **location})]


DOMAIN = Domain(NAME, {
    "setLight": Operation("setLight", DeviceFunction.SET_LIGHT, SetLight, set_light, summarise_set_light),
    "getStatus": Operation("getStatus", DeviceFunction.GET_LIGHT_STATUS, NoParams, get_status),
    "setDeviceSchedule": Operation("setDeviceSchedule", DeviceFunction.SET_SCHEDULE, DeviceSchedule,
                                   set_device_schedule),
})
