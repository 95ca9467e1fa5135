"""Smart metering: functional operations to generic meter commands (pure, a table of data)."""

from __future__ import annotations

from pydantic import AwareDatetime

from cloud.domains.base import CommandSpec, Domain, NoParams, Operation, OperationParams
from cloud.registry.functions import DeviceFunction

NAME = "smartmetering"


class SynchronizeTime(OperationParams):
    """Set the meter's clock; without ``time`` the concentrator sets its own (NTP-synced) time."""

    time: AwareDatetime | None = None


def synchronize_time(params: SynchronizeTime) -> list[CommandSpec]:
    return [CommandSpec("set_clock", {"time": params.time.isoformat()} if params.time else {})]


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
}

DOMAIN = Domain(NAME, {
    **{op: Operation(op, function, NoParams, _single(command)) for op, (function, command) in _SIMPLE.items()},
    "synchronizeTime": Operation("synchronizeTime", DeviceFunction.SYNCHRONIZE_TIME, SynchronizeTime,
                                 synchronize_time),
})
