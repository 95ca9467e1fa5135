"""Distributed generation and load control: functional operations to generic commands (pure).

- ``setPowerLimit``: an inverter's active-power limit, percent of its rating -> ``set_power_limit``;
- ``switchLoad``: a controllable load on or off -> ``set_load``;
- ``getState``: the device's values now (limit, loads, power, status) -> ``get_status``.

The edge writes the device's register and reads it back, so a result is the device's state
after the change, not an echo of the request.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, StrictBool, StrictInt

from cloud.domains.base import CommandSpec, Domain, NoParams, Operation, OperationParams
from cloud.registry.functions import DeviceFunction

NAME = "loadcontrol"



def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A JSON integer: 2 or 2.0 (JSON Schema's integer), never "2" or 2.5.
JsonInt = Annotated[StrictInt, BeforeValidator(_whole)]

class SetPowerLimit(OperationParams):
    """Limit an inverter's active power to ``percent`` of its rating (100: no limit)."""

    percent: JsonInt = Field(ge=0, le=100)


class SwitchLoad(OperationParams):
    """Switch controllable load ``index`` (1 on a single-load device) on or off."""

    index: JsonInt = Field(default=1, ge=1, le=16)
    on: StrictBool


def set_power_limit(params: SetPowerLimit) -> list[CommandSpec]:
    return [CommandSpec("set_power_limit", {"percent": params.percent})]


def switch_load(params: SwitchLoad) -> list[CommandSpec]:
    return [CommandSpec("set_load", {"index": params.index, "closed": params.on})]


def get_state(_params: NoParams) -> list[CommandSpec]:
    return [CommandSpec("get_status")]


DOMAIN = Domain(NAME, {
    "setPowerLimit": Operation("setPowerLimit", DeviceFunction.SET_POWER_LIMIT, SetPowerLimit, set_power_limit),
    "switchLoad": Operation("switchLoad", DeviceFunction.SET_LOAD, SwitchLoad, switch_load),
    "getState": Operation("getState", DeviceFunction.GET_STATUS, NoParams, get_state),
})
