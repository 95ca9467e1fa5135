"""Which device function a generic command exercises: what the core checks authorisation for.

The core decides this itself rather than trusting a claim in the message, so a domain layer
(or an application writing to a domain topic) cannot widen what an organisation may do.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cloud.registry.enums import Protocol
from cloud.registry.functions import DeviceFunction

F = DeviceFunction

FUNCTION_OF: Mapping[str, DeviceFunction] = MappingProxyType({
    "set_relay": F.SET_LIGHT,
    "set_dim_level": F.SET_LIGHT,
    "get_light_status": F.GET_LIGHT_STATUS,
    "set_light_schedule": F.SET_SCHEDULE,
    "read_now": F.GET_ACTUAL_METER_READS,
    "read_profile": F.GET_PERIODIC_METER_READS,
    "read_alarms": F.READ_ALARMS,
    "disconnect": F.DISCONNECT,
    "connect": F.RECONNECT,
    "set_clock": F.SYNCHRONIZE_TIME,
    "get_firmware_version": F.GET_FIRMWARE_VERSION,
    "update_firmware": F.UPDATE_FIRMWARE,
    "set_relay_schedule": F.SET_TARIFF_SCHEDULE,
    "get_status": F.GET_STATUS,
    "set_power_limit": F.SET_POWER_LIMIT,
    "set_load": F.SET_LOAD,
    "get_power_quality": F.GET_POWER_QUALITY,
    "read_power_quality_profile": F.GET_POWER_QUALITY,
    "read_power_quality_events": F.GET_POWER_QUALITY,
    # A raw register write can change anything the map lets be written: configuration.
    "write_register": F.SET_CONFIGURATION,
    # A DLMS key change (two-phase): the meter's keys, OWNER only.
    "change_keys": F.UPDATE_KEY,
})

# Protocols whose devices take one command at a time (a DLMS association is single-client).
SEQUENTIAL_PROTOCOLS: frozenset[Protocol] = frozenset({Protocol.DLMS})


def function_of(command_name: str) -> DeviceFunction | None:
    """The device function ``command_name`` needs, or None for a command the core does not know."""
    return FUNCTION_OF.get(command_name)
