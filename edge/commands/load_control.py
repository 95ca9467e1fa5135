"""Load control and distributed generation on Modbus devices: writes confirmed by a read-back.

Which register does what is data: the register map's property ids say it. A point whose
property is ``GW_inverter.activePowerLimit`` is an inverter's active-power limit (percent of
its rating); ``GW_relay.<n>.command`` switches load ``n`` and ``GW_relay.<n>.state`` is that
load's contact as the device reports it. A device gets the handlers its map has points for:

- ``set_power_limit {percent}``: write the limit, read it back;
- ``set_load {index, closed}``: write the relay coil, read the contact state back;
- ``get_status``: every point's value now, by point name.

A read-back that differs from what was written fails the command (DEVICE_ERROR): the device
took the write but did not act on it (a local override, a fault), and the caller must know.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from devices.modbus.register_map import Point, RegisterMap
from edge.commands.errors import CommandFailed, ErrorCode, InvalidParameters
from edge.commands.executor import CommandHandler
from edge.modbus.plan import Value
from edge.polling import MeterPoller

POWER_LIMIT_PROPERTY = "GW_inverter.activePowerLimit"
_RELAY = re.compile(r"^GW_relay\.(\d+)\.(command|state)$")


def relay_points(register_map: RegisterMap) -> dict[int, tuple[Point, Point | None]]:
    """Load index -> (its command coil, its state input if the map has one)."""
    commands: dict[int, Point] = {}
    states: dict[int, Point] = {}
    for point in register_map.points:
        match = _RELAY.match(point.property_id)
        if match is None:
            continue
        index = int(match.group(1))
        if match.group(2) == "command" and point.writable:
            commands[index] = point
        elif match.group(2) == "state":
            states[index] = point
    return {index: (point, states.get(index)) for index, point in sorted(commands.items())}


def power_limit_point(register_map: RegisterMap) -> Point | None:
    return next((p for p in register_map.points if p.property_id == POWER_LIMIT_PROPERTY and p.writable), None)


def _same(written: Value, read: Value) -> bool:
    if isinstance(written, bool) or isinstance(read, bool):
        return bool(written) == bool(read)
    return abs(float(written) - float(read)) < 1e-6 * max(1.0, abs(float(written)))


def load_control_handlers(*, source: Any, poller: MeterPoller,
                          meter_errors: Callable[[], AbstractAsyncContextManager[None]]) -> dict[str, CommandHandler]:
    """The handlers ``source``'s register map supports (an :class:`edge.modbus.ModbusMeterSource`;
    ``meter_errors`` turns its failures into command failures). ``get_status`` always."""
    register_map: RegisterMap = source.adapter.register_map
    meter_id: str = source.meter_id
    relays = relay_points(register_map)
    limit = power_limit_point(register_map)

    async def write_and_read(point: Point, value: Value, check: Point) -> Value:
        async with meter_errors(), poller.exclusive(meter_id):
            await source.write_point(point.name, value)
            values: Mapping[str, Value] = await source.adapter.read_values()
        read = values[check.name]
        if not _same(value, read):
            raise CommandFailed(ErrorCode.DEVICE_ERROR,
                                f"{meter_id}: wrote {point.name} = {value!r} but {check.name} reads {read!r}")
        return read

    async def set_power_limit(params: dict[str, Any]) -> dict[str, Any]:
        assert limit is not None
        percent = params.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidParameters(f"set_power_limit needs 'percent' (a number), not {percent!r}")
        read = await write_and_read(limit, percent, limit)
        return {"activePowerLimit": read}

    async def set_load(params: dict[str, Any]) -> dict[str, Any]:
        index, closed = params.get("index"), params.get("closed")
        if isinstance(index, bool) or not isinstance(index, int) or index not in relays:
            raise InvalidParameters(f"{meter_id} has loads {sorted(relays)}, not {index!r}")
        if not isinstance(closed, bool):
            raise InvalidParameters(f"closed must be true or false, not {closed!r}")
        command, state = relays[index]
        read = await write_and_read(command, closed, state or command)
        return {"loads": [{"index": index, "closed": bool(read)}]}

    async def get_status(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id):
            values = await source.adapter.read_values()
        status: dict[str, Any] = {"values": {name: values[name] for name in sorted(values)}}
        if relays:
            status["loads"] = [{"index": i, "closed": bool(values[(s or c).name])} for i, (c, s) in relays.items()]
        if limit is not None:
            status["activePowerLimit"] = values[limit.name]
        return status

    handlers: dict[str, CommandHandler] = {"get_status": get_status}
    if limit is not None:
        handlers["set_power_limit"] = set_power_limit
    if relays:
        handlers["set_load"] = set_load
    return handlers
