"""Load control and distributed generation on Modbus devices: writes confirmed by a read-back.

Which register does what is data: the register map's property ids say it
(:mod:`devices.modbus.roles`). A device gets the handlers its map has points for:

- ``set_power_limit {percent}``: write the limit, read it back;
- ``set_load {index, closed}``: write the relay coil, read the contact state back;
- ``get_status``: every point's value now, by point name;
- ``set_relay_schedule {entries}``: a map with a schedule block (:class:`ScheduleBlock`) keeps the
  relays' weekly schedule on the device, which switches on its own; written, then read back.

A read-back that differs from what was written fails the command (DEVICE_ERROR): the device
took the write but did not act on it (a local override, a fault), and the caller must know.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from edge.commands.errors import CommandFailed, ErrorCode, InvalidParameters
from edge.commands.executor import CommandHandler
from edge.polling import MeterPoller
from edge.switching import ScheduleError, SwitchPoint, entries_of, switch_points

if TYPE_CHECKING:  # Modbus meters only: a concentrator without one loads no register maps
    from devices.modbus.register_map import Point, RegisterMap
    from edge.modbus.plan import Value


def schedule_result(points: list[SwitchPoint], held: list[SwitchPoint], meter_id: str) -> dict[str, Any]:
    """What ``set_relay_schedule`` answers: the schedule the device holds, read back; a device
    holding other than what was written fails the command."""
    if sorted(held) != sorted(points):
        raise CommandFailed(ErrorCode.DEVICE_ERROR, f"{meter_id}: wrote {len(points)} switch points, "
                                                    f"the device holds {len(held)} others")
    return {"entries": entries_of(held), "switchPoints": len(held)}


def parse_schedule(params: dict[str, Any]) -> list[SwitchPoint]:
    try:
        return switch_points(params.get("entries"))
    except ScheduleError as exc:
        raise InvalidParameters(str(exc)) from None


def _same(written: Value, read: Value) -> bool:
    if isinstance(written, bool) or isinstance(read, bool):
        return bool(written) == bool(read)
    return abs(float(written) - float(read)) < 1e-6 * max(1.0, abs(float(written)))


def load_control_handlers(*, source: Any, poller: MeterPoller,
                          meter_errors: Callable[[], AbstractAsyncContextManager[None]]) -> dict[str, CommandHandler]:
    """The handlers ``source``'s register map supports (an :class:`edge.modbus.ModbusMeterSource`;
    ``meter_errors`` turns its failures into command failures). ``get_status`` always."""
    from devices.modbus.roles import power_limit_point, relay_points

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

    async def set_relay_schedule(params: dict[str, Any]) -> dict[str, Any]:
        points = parse_schedule(params)
        unknown = sorted({p.index for p in points} - set(relays))
        if unknown:
            raise InvalidParameters(f"{meter_id} has relays {sorted(relays)}, not {unknown}")
        async with meter_errors(), poller.exclusive(meter_id):
            held = await source.adapter.write_schedule(points)
        return schedule_result(points, held, meter_id)

    handlers: dict[str, CommandHandler] = {"get_status": get_status}
    if register_map.schedule is not None and relays:
        handlers["set_relay_schedule"] = set_relay_schedule
    if limit is not None:
        handlers["set_power_limit"] = set_power_limit
    if relays:
        handlers["set_load"] = set_load
    return handlers
