"""Power quality: functional operations to generic commands (pure).

- ``actualValues``: voltage, current, power factor and THD per phase, the frequency, and the
  sag and swell counters, now -> ``get_power_quality``;
- ``profile``: the meter's power-quality profile over a range (at most 31 days) ->
  ``read_power_quality_profile``;
- ``events``: the sag and swell counters and the power-quality event log -> ``read_power_quality_events``.

Which DLMS objects hold them is the meter profile's ``powerQuality`` block (devices/profiles).
"""

from __future__ import annotations

from cloud.domains.base import CommandSpec, Domain, NoParams, Operation
from cloud.domains.smartmetering.translator import PeriodicReads
from cloud.registry.functions import DeviceFunction

NAME = "powerquality"


def actual_values(_params: NoParams) -> list[CommandSpec]:
    return [CommandSpec("get_power_quality")]


def profile(params: PeriodicReads) -> list[CommandSpec]:
    return [CommandSpec("read_power_quality_profile", {"from": params.from_.isoformat(), "to": params.to.isoformat()})]


def events(_params: NoParams) -> list[CommandSpec]:
    return [CommandSpec("read_power_quality_events")]


DOMAIN = Domain(NAME, {
    "actualValues": Operation("actualValues", DeviceFunction.GET_POWER_QUALITY, NoParams, actual_values),
    "profile": Operation("profile", DeviceFunction.GET_POWER_QUALITY, PeriodicReads, profile),
    "events": Operation("events", DeviceFunction.GET_POWER_QUALITY, NoParams, events),
})
