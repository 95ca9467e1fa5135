"""Public lighting: functional operations to generic commands for a light controller (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from cloud.domains.base import CommandSpec, Domain, NoParams, Operation, OperationParams
from cloud.registry.functions import DeviceFunction

NAME = "publiclighting"
# The relay that switches the lamp on a single-output controller.
LAMP_RELAY = 1


class SetLight(OperationParams):
    """Switch the light on or off, optionally at a dim level (percent)."""

    on: bool
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


DOMAIN = Domain(NAME, {
    "setLight": Operation("setLight", DeviceFunction.SET_LIGHT, SetLight, set_light, summarise_set_light),
    "getStatus": Operation("getStatus", DeviceFunction.GET_LIGHT_STATUS, NoParams, get_status),
})
