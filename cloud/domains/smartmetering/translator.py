"""Smart metering: functional operations to generic meter commands (pure, a table of data)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from cloud.domains.base import CommandSpec, Domain, NoParams, Operation, OperationParams
from cloud.registry.functions import DeviceFunction

NAME = "smartmetering"


class SynchronizeTime(OperationParams):
    """Set the meter's clock; without ``time`` the concentrator sets its own (NTP-synced) time."""

    time: AwareDatetime | None = None


def synchronize_time(params: SynchronizeTime) -> list[CommandSpec]:
    return [CommandSpec("set_clock", {"time": params.time.isoformat()} if params.time else {})]


class KeyChange(OperationParams):
    """A DLMS key change as the platform sends it: its id and the new keys wrapped with the meter's
    master key (built by the key change route from the registry's pending keys, never in clear)."""

    change_id: str = Field(alias="changeId", pattern=r"^[0-9a-f]{16}$")
    keys: dict[Literal["authentication_key", "block_cipher_key"], Annotated[str, Field(pattern=r"^[0-9a-f]{48}$")]] = (
        Field(min_length=1))


def key_change(params: KeyChange) -> list[CommandSpec]:
    return [CommandSpec("change_keys", {"changeId": params.change_id, "keys": dict(params.keys)})]


MAX_PERIODIC_RANGE = timedelta(days=31)


class PeriodicReads(OperationParams):
    """The interval readings (load profile) of a time range: ``from`` < ``to``, at most 31 days apart."""

    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime

    @model_validator(mode="after")
    def _range(self) -> PeriodicReads:
        if self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        if self.to - self.from_ > MAX_PERIODIC_RANGE:
            raise ValueError(f"the range may span at most {MAX_PERIODIC_RANGE.days} days")
        return self


def periodic_reads(params: PeriodicReads) -> list[CommandSpec]:
    return [CommandSpec("read_profile", {"from": params.from_.isoformat(), "to": params.to.isoformat()})]


def _single(command: str):  # noqa: ANN202 - a tiny factory for the table below
    def translate(_params: NoParams) -> list[CommandSpec]:
        return [CommandSpec(command)]
    return translate


# operation -> (device function, generic command) for the parameterless operations.
_SIMPLE: dict[str, tuple[DeviceFunction, str]] = {
    "actualReads": (DeviceFunction.GET_ACTUAL_METER_READS, "read_now"),
    "disconnect": (DeviceFunction.DISCONNECT, "disconnect"),
    "reconnect": (DeviceFunction.RECONNECT, "connect"),
    "firmwareVersion": (DeviceFunction.GET_FIRMWARE_VERSION, "get_firmware_version"),
    "alarms": (DeviceFunction.READ_ALARMS, "read_alarms"),
}

DOMAIN = Domain(NAME, {
    **{op: Operation(op, function, NoParams, _single(command)) for op, (function, command) in _SIMPLE.items()},
    "synchronizeTime": Operation("synchronizeTime", DeviceFunction.SYNCHRONIZE_TIME, SynchronizeTime,
                                 synchronize_time),
    "periodicReads": Operation("periodicReads", DeviceFunction.GET_PERIODIC_METER_READS, PeriodicReads,
                               periodic_reads),
    "keyChange": Operation("keyChange", DeviceFunction.UPDATE_KEY, KeyChange, key_change),
})
