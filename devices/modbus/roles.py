"""What a register map's points do, told by their property ids: load relays and an inverter's limit.

A point whose property is ``GW_inverter.activePowerLimit`` is an inverter's active-power limit
(percent of its rating); ``GW_relay.<n>.command`` switches load ``n`` and ``GW_relay.<n>.state``
is that load's contact as the device reports it. Both the concentrator's command handlers and
the Modbus simulator read them here.
"""

from __future__ import annotations

import re

from devices.modbus.register_map import Point, RegisterMap

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
    """The writable point holding an inverter's active-power limit, if the map has one."""
    return next((p for p in register_map.points if p.property_id == POWER_LIMIT_PROPERTY and p.writable), None)
