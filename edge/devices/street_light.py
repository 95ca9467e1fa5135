"""Simulated MQTT-native street-light controllers: one light, or a fleet over one session.

A light has relays (index 1.. ``relay_count``) and a dim level (0-100 %). It answers the
generic commands ``set_relay`` (index, closed), ``set_dim_level`` (percent) and
``get_light_status`` on the response topic it is given, and publishes its state retained on
``device/<id>/status``. :class:`LightState` is the pure model; :class:`StreetLightFleet`
serves any number of lights from one MQTT session, so tens of thousands fit in one process.
With one light it subscribes only to its own ``device/<id>/command`` (the broker's device
role allows just that); with several it subscribes ``device/+/command`` (a fleet account).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from broker import topics
from broker.errors import Invalid
from broker.schemas.command import CommandError, CommandResponse, CommandStatus, GenericCommand
from broker.session import Message, MqttSession, publish_properties

log = logging.getLogger(__name__)


class LightCommandError(Invalid):
    """A command the light cannot carry out (bad parameters, unsupported), with the error code it answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _int_param(params: dict[str, Any], name: str, low: int, high: int) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LightCommandError("INVALID_PARAMETERS", f"{name} must be an integer {low}..{high}, not {value!r}")
    return value


@dataclass(slots=True)
class LightState:
    """A street-light controller's state and what each command does to it (pure)."""

    relay_count: int = 1
    relays: dict[int, bool] = field(default_factory=dict)
    dim_level: int = 100
    # The last command carried out (its id) and the answer sent: a repeat gets the same answer.
    last: tuple[str, bytes] | None = None

    def __post_init__(self) -> None:
        for index in range(1, self.relay_count + 1):
            self.relays.setdefault(index, False)

    @property
    def on(self) -> bool:
        return any(self.relays.values()) and self.dim_level > 0

    def status(self) -> dict[str, Any]:
        return {"on": self.on, "dimLevel": self.dim_level,
                "relays": [{"index": i, "closed": closed} for i, closed in sorted(self.relays.items())]}

    def apply(self, name: str, params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Carry out one command; return its result and whether the state changed."""
        if name == "set_relay":
            index = _int_param(params, "index", 1, self.relay_count)
            closed = params.get("closed")
            if not isinstance(closed, bool):
                raise LightCommandError("INVALID_PARAMETERS", f"closed must be true or false, not {closed!r}")
            changed = self.relays[index] != closed
            self.relays[index] = closed
            return self.status(), changed
        if name == "set_dim_level":
            percent = _int_param(params, "percent", 0, 100)
            changed = self.dim_level != percent
            self.dim_level = percent
            return self.status(), changed
        if name == "get_light_status":
            return self.status(), False
        raise LightCommandError("UNSUPPORTED_COMMAND", f"a street light does not support {name!r}")


class StreetLightFleet:
    """Serves the lights ``light_ids`` over one MQTT session."""

    def __init__(self, *, session: MqttSession, light_ids: Iterable[str] = (), relay_count: int = 1,
                 lights: dict[str, LightState] | None = None, share_group: str | None = None) -> None:
        """Serve ``light_ids`` (new states), or ``lights`` (states shared with sibling fleets: several
        sessions in one process then split the commands through the shared group ``share_group``)."""
        self._session = session
        self.lights: dict[str, LightState] = lights if lights is not None else {}
        for light_id in light_ids:
            self.lights[topics.validate_level(light_id, what="device id")] = LightState(relay_count=relay_count)
        self._share_group = share_group
        self.commands_handled = 0
        self.repeats = 0  # commands received again and answered without acting

    async def start(self, *, publish_initial_status: bool = True) -> None:
        """Subscribe to the lights' command topics and publish each light's retained status."""
        if len(self.lights) == 1 and self._share_group is None:
            (only,) = self.lights
            await self._session.subscribe(topics.device_topic(only, "command"), self.handle)
        elif self._share_group is not None:
            await self._session.subscribe(topics.shared(self._share_group, topics.ALL_DEVICE_COMMANDS), self.handle)
        else:
            await self._session.subscribe(topics.ALL_DEVICE_COMMANDS, self.handle)
        if publish_initial_status:
            for light_id in self.lights:
                await self._publish_status(light_id)

    async def handle(self, message: Message) -> None:
        try:
            light_id = topics.parse(message.topic).device
            command = GenericCommand.model_validate_json(message.payload)
        except (topics.TopicError, ValidationError) as exc:
            log.warning("dropping bad command on %s: %s (payload %r)", message.topic, exc, message.payload[:200])
            return
        state = self.lights.get(light_id or "")
        if state is None or command.device_id != light_id:
            return  # another fleet's light, or a command addressed wrongly: not ours to answer
        response_topic = message.response_topic or topics.device_topic(light_id, "response")
        props = publish_properties(correlation_data=message.correlation_data or command.correlation_data())
        command_id = str(command.command_id)
        if state.last is not None and state.last[0] == command_id:
            # The same command again (the broker's redelivery, or a core that died before it knew
            # the first copy left): answer as before, without switching twice.
            self.repeats += 1
            await self._session.publish(response_topic, state.last[1], qos=1, properties=props)
            return
        self.commands_handled += 1
        changed = False
        now = datetime.now(UTC)
        if command.expired(now):
            response = self._response(command, CommandStatus.EXPIRED,
                                      error=CommandError(code="EXPIRED", message="time-to-live passed"))
        else:
            try:
                result, changed = state.apply(command.name, command.parameters)
                response = self._response(command, CommandStatus.SUCCEEDED, result=result)
            except LightCommandError as exc:
                response = self._response(command, CommandStatus.FAILED,
                                          error=CommandError(code=exc.code, message=str(exc)))
        log.debug("light %s: %s %s -> %s", light_id, command.name, command.command_id, response.status)
        wire = response.to_wire()
        state.last = (command_id, wire)
        await self._session.publish(response_topic, wire, qos=1, properties=props)
        if changed:
            await self._publish_status(light_id)

    @staticmethod
    def _response(command: GenericCommand, status: CommandStatus, *, result: dict[str, Any] | None = None,
                  error: CommandError | None = None) -> CommandResponse:
        return CommandResponse(commandId=command.command_id, deviceId=command.device_id, status=status,
                               result=result, error=error, completedAt=datetime.now(UTC))

    async def _publish_status(self, light_id: str) -> None:
        body = {"deviceId": light_id, **self.lights[light_id].status(), "at": datetime.now(UTC).isoformat()}
        await self._session.publish(topics.device_topic(light_id, "status"), json.dumps(body).encode(),
                                    qos=1, retain=True)


def street_light(*, session: MqttSession, light_id: str, relay_count: int = 1) -> StreetLightFleet:
    """One street light with its own identity (its broker account is its device id)."""
    return StreetLightFleet(session=session, light_ids=[light_id], relay_count=relay_count)
