"""Simulated MQTT-native street-light controllers: one light, or a fleet over one session.

A light has relays (index 1.. ``relay_count``) and a dim level (0-100 %). It answers the
generic commands ``set_relay`` (index, closed), ``set_dim_level`` (percent),
``get_light_status`` and ``set_light_schedule`` (a schedule it keeps and runs itself, see
:mod:`edge.devices.light_schedule`; :meth:`StreetLightFleet.tick`) on the response topic it is
given, and publishes its state retained on ``device/<id>/status`` (a :class:`LightStatus`), as a
birth at every connection (:meth:`StreetLightFleet.run_births`), so the cloud sees which schedule
version a light holds when it comes back. :class:`LightState` is the pure model; :class:`StreetLightFleet`
serves any number of lights from one MQTT session, so tens of thousands fit in one process.
With one light it subscribes only to its own ``device/<id>/command`` (the broker's device
role allows just that); with several it subscribes ``device/+/command`` (a fleet account).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker import topics
from broker.errors import Invalid
from broker.lean import ContractError
from broker.lean.command import CommandError, CommandResponse, CommandStatus, GenericCommand
from broker.lean.light import LightStatus, RelayState
from broker.session import Message, MqttError, MqttSession, publish_properties
from edge.devices.light_schedule import DeviceSchedule, LightScheduleError, parse_schedule

log = logging.getLogger(__name__)

# The relay that switches the lamp (its schedule switches this one).
LAMP_RELAY = 1


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
    # Its own switching schedule (set_light_schedule) and how far it has run it.
    schedule: DeviceSchedule | None = None
    schedule_until: datetime | None = None
    # How many schedules it took on (a version it already holds is not taken on again).
    schedules_taken: int = 0

    def __post_init__(self) -> None:
        for index in range(1, self.relay_count + 1):
            self.relays.setdefault(index, False)

    @property
    def on(self) -> bool:
        return any(self.relays.values()) and self.dim_level > 0

    def status(self) -> dict[str, Any]:
        status = {"on": self.on, "dimLevel": self.dim_level,
                  "relays": [{"index": i, "closed": closed} for i, closed in sorted(self.relays.items())]}
        return status | ({"scheduleVersion": self.schedule.version} if self.schedule is not None else {})

    def run_schedule(self, now: datetime) -> bool:
        """Switch as the schedule says for every entry moment since the last call; whether anything changed."""
        if self.schedule is None or self.schedule_until is None or now <= self.schedule_until:
            return False
        changed = False
        for _moment, entry in self.schedule.due(self.schedule_until, now):
            before = self.status()
            self.relays[LAMP_RELAY] = entry.on
            if entry.on and entry.dim_level is not None:
                self.dim_level = entry.dim_level
            changed |= self.status() != before
        self.schedule_until = now
        return changed

    def apply(self, name: str, params: dict[str, Any], *, now: datetime | None = None) -> tuple[dict[str, Any], bool]:
        """Carry out one command; return its result and whether the state changed."""
        if name == "set_light_schedule":
            try:
                schedule = parse_schedule(params)
            except LightScheduleError as exc:
                raise LightCommandError("INVALID_PARAMETERS", str(exc)) from None
            if self.schedule is not None and self.schedule.version == schedule.version:
                # The same version again (the cloud re-sent it at a reconnection while the first
                # copy was still queued): kept as it runs, not restarted.
                return self.status() | {"entries": len(self.schedule.entries)}, False
            changed = self.schedule != schedule
            self.schedule, self.schedule_until = schedule, now or datetime.now(UTC)
            self.schedules_taken += 1
            return self.status() | {"entries": len(schedule.entries)}, changed
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
                 lights: dict[str, LightState] | None = None, share_group: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Serve ``light_ids`` (new states), or ``lights`` (states shared with sibling fleets: several
        sessions in one process then split the commands through the shared group ``share_group``)."""
        self._session = session
        self.lights: dict[str, LightState] = lights if lights is not None else {}
        for light_id in light_ids:
            self.lights[topics.validate_level(light_id, what="device id")] = LightState(relay_count=relay_count)
        self._share_group = share_group
        self._clock = clock
        self._unpublished: set[str] = set()
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
                await self._publish_status(light_id, birth=True)

    async def handle(self, message: Message) -> None:
        try:
            light_id = topics.parse(message.topic).device
            command = GenericCommand.parse(message.payload)
        except (topics.TopicError, ContractError) as exc:
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
                taken = state.schedules_taken
                result, changed = state.apply(command.name, command.parameters, now=self._clock())
                response = self._response(command, CommandStatus.SUCCEEDED, result=result)
                if command.name == "set_light_schedule":
                    log.info("light %s: schedule version %s %s", light_id, result.get("scheduleVersion"),
                             "taken" if state.schedules_taken > taken else "already held, kept as it runs")
            except LightCommandError as exc:
                response = self._response(command, CommandStatus.FAILED,
                                          error=CommandError(code=exc.code, message=str(exc)))
        log.debug("light %s: %s %s -> %s", light_id, command.name, command.command_id, response.status)
        wire = response.to_wire()
        state.last = (command_id, wire)
        await self._session.publish(response_topic, wire, qos=1, properties=props)
        # After a schedule, also one it already held: the cloud learns the version it holds.
        if changed or command.name == "set_light_schedule":
            await self._publish_status(light_id)

    async def tick(self) -> list[str]:
        """Run every light's own schedule up to now; returns the lights that switched. Their status
        is published if the broker can be reached; a light switches all the same when it cannot."""
        switched = [light_id for light_id, state in self.lights.items() if state.run_schedule(self._clock())]
        for light_id in switched:
            log.info("light %s switched by its schedule: %s", light_id, self.lights[light_id].status())
        self._unpublished.update(switched)
        # Publishing waits for the connection: with the link down the status waits for a later tick.
        if self._unpublished and self._session.connected.is_set():
            for light_id in sorted(self._unpublished):
                try:
                    await self._publish_status(light_id)
                except MqttError as exc:
                    log.info("light %s: status not published (%s); tried again next tick", light_id, exc)
                    break
                self._unpublished.discard(light_id)
        return switched

    async def run_births(self, stop: asyncio.Event) -> None:
        """At every later connection of the session, publish each light's status as a birth (with
        the schedule version it holds), until ``stop``. One fleet of lights sharing states runs it."""
        seen = self._session.connections
        while not stop.is_set():
            connection = asyncio.create_task(self._session.wait_connection(seen), name="light-births-connection")
            stopping = asyncio.create_task(stop.wait(), name="light-births-stop")
            try:
                await asyncio.wait((connection, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (connection, stopping):
                    task.cancel()
                await asyncio.gather(connection, stopping, return_exceptions=True)
            if stop.is_set() or connection.cancelled():
                return
            seen = connection.result()
            try:
                for light_id in self.lights:
                    await self._publish_status(light_id, birth=True)
            except MqttError as exc:
                log.info("births not all published (%s); the next connection publishes them", exc)

    async def run_schedules(self, stop: asyncio.Event, *, interval: float = 20.0) -> None:
        """Tick until ``stop``: a schedule's moment is kept to within ``interval`` seconds."""
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    @staticmethod
    def _response(command: GenericCommand, status: CommandStatus, *, result: dict[str, Any] | None = None,
                  error: CommandError | None = None) -> CommandResponse:
        return CommandResponse(commandId=command.command_id, deviceId=command.device_id, status=status,
                               result=result, error=error, completedAt=datetime.now(UTC))

    async def _publish_status(self, light_id: str, *, birth: bool = False) -> None:
        state = self.lights[light_id]
        status = LightStatus(device_id=light_id, on=state.on, dim_level=state.dim_level,
                             relays=[RelayState(index=i, closed=closed) for i, closed in sorted(state.relays.items())],
                             schedule_version=state.schedule.version if state.schedule is not None else None,
                             birth=birth, at=datetime.now(UTC))
        await self._session.publish(topics.device_topic(light_id, "status"), status.to_wire(), qos=1, retain=True)


def street_light(*, session: MqttSession, light_id: str, relay_count: int = 1) -> StreetLightFleet:
    """One street light with its own identity (its broker account is its device id)."""
    return StreetLightFleet(session=session, light_ids=[light_id], relay_count=relay_count)
