"""The simulated street light: its pure state machine, and a fleet answering over a real broker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import topics
from broker.schemas.command import CommandResponse, CommandStatus, GenericCommand
from broker.session import Backoff, Message, MqttSession, publish_properties
from edge.devices.street_light import LightCommandError, LightState, StreetLightFleet
from tests.fixtures.mosquitto import MosquittoServer

_commands = st.one_of(
    st.builds(lambda i, c: ("set_relay", {"index": i, "closed": c}), st.integers(-1, 3), st.booleans()),
    st.builds(lambda p: ("set_dim_level", {"percent": p}), st.integers(-10, 110)),
    st.just(("get_light_status", {})),
)


@given(st.lists(_commands, max_size=20))
def test_state_stays_valid_whatever_is_asked(commands: list[tuple[str, dict]]) -> None:
    state = LightState(relay_count=2)
    for name, params in commands:
        before = state.status()
        try:
            result, changed = state.apply(name, params)
        except LightCommandError as exc:
            assert exc.code == "INVALID_PARAMETERS" and state.status() == before
            continue
        assert result == state.status() and changed is (before != result)
        assert 0 <= state.dim_level <= 100 and set(state.relays) == {1, 2}
    assert state.on is (any(state.relays.values()) and state.dim_level > 0)


def test_unsupported_command() -> None:
    with pytest.raises(LightCommandError) as info:
        LightState().apply("self_destruct", {})
    assert info.value.code == "UNSUPPORTED_COMMAND"


async def test_fleet_serves_many_lights_over_one_session(shared_mosquitto: MosquittoServer) -> None:
    def session(name: str) -> MqttSession:
        return MqttSession(client_id=name, host=shared_mosquitto.host, port=shared_mosquitto.port, session_expiry=0,
                           backoff=Backoff(initial=0.05), **shared_mosquitto.credentials("gridwire-cloud"))

    ids = [f"fleet-light-{i}" for i in range(50)]
    answers: dict[str, CommandResponse] = {}
    statuses: dict[str, dict] = {}
    done, all_status = asyncio.Event(), asyncio.Event()

    async def on_response(message: Message) -> None:
        response = CommandResponse.model_validate_json(message.payload)
        answers[response.device_id] = response
        if len(answers) == len(ids):
            done.set()

    async def on_status(message: Message) -> None:
        status = json.loads(message.payload)
        statuses[status["deviceId"]] = status
        if all(statuses.get(i, {}).get("dimLevel") == 30 for i in ids):
            all_status.set()

    async with session("fleet-sim") as fleet_session, session("fleet-core") as core:
        fleet = StreetLightFleet(session=fleet_session, light_ids=ids)
        await fleet.start()
        await core.subscribe("device/+/response", on_response)
        now = datetime.now(UTC)
        for light in ids:
            command = GenericCommand(deviceId=light, name="set_dim_level", parameters={"percent": 30},
                                     issuedAt=now, expiresAt=now + timedelta(seconds=30))
            await core.publish(topics.device_topic(light, "command"), command.to_wire(), properties=publish_properties(
                correlation_data=command.correlation_data(), response_topic=topics.device_topic(light, "response")))
        async with asyncio.timeout(10):
            await done.wait()
        # Retained status: a late subscriber sees every light's current state.
        await core.subscribe("device/+/status", on_status)
        async with asyncio.timeout(10):
            await all_status.wait()
    assert {a.status for a in answers.values()} == {CommandStatus.SUCCEEDED}
    assert fleet.commands_handled == len(ids) and all(fleet.lights[i].dim_level == 30 for i in ids)


async def test_a_repeated_command_is_answered_again_not_carried_out_twice(shared_mosquitto: MosquittoServer) -> None:
    def session(name: str) -> MqttSession:
        return MqttSession(client_id=name, host=shared_mosquitto.host, port=shared_mosquitto.port, session_expiry=0,
                           backoff=Backoff(initial=0.05), **shared_mosquitto.credentials("gridwire-cloud"))

    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_response(message: Message) -> None:
        await answers.put(bytes(message.payload))

    async with session("repeat-sim") as fleet_session, session("repeat-core") as core:
        fleet = StreetLightFleet(session=fleet_session, light_ids=["repeat-light"])
        await fleet.start(publish_initial_status=False)
        await core.subscribe("device/repeat-light/response", on_response)
        now = datetime.now(UTC)
        dim = GenericCommand(deviceId="repeat-light", name="set_dim_level", parameters={"percent": 30},
                             issuedAt=now, expiresAt=now + timedelta(seconds=30))
        toggle = GenericCommand(deviceId="repeat-light", name="set_relay", parameters={"index": 1, "closed": True},
                                issuedAt=now, expiresAt=now + timedelta(seconds=30))
        received = []
        for command in (dim, toggle, toggle):
            await core.publish(topics.device_topic("repeat-light", "command"), command.to_wire())
            async with asyncio.timeout(10):
                received.append(await answers.get())
    assert received[1] == received[2]  # the same answer, byte for byte
    assert fleet.commands_handled == 2 and fleet.repeats == 1
    assert fleet.lights["repeat-light"].status()["on"] is True


def test_a_schedule_version_it_holds_is_not_taken_again() -> None:
    state = LightState()
    schedule = {"version": 7, "entries": [{"at": "18:00", "timezone": "UTC", "on": True}]}
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    result, changed = state.apply("set_light_schedule", schedule, now=start)
    assert changed and result["scheduleVersion"] == 7 and state.schedules_taken == 1
    state.run_schedule(start + timedelta(hours=3))
    # The same version again (a re-send crossing a queued copy): kept as it runs, not restarted.
    result, changed = state.apply("set_light_schedule", schedule, now=start)
    assert not changed and result["scheduleVersion"] == 7 and state.schedules_taken == 1
    assert state.schedule_until == start + timedelta(hours=3)
    _, changed = state.apply("set_light_schedule", schedule | {"version": 8}, now=start)
    assert changed and state.schedules_taken == 2 and state.schedule is not None and state.schedule.version == 8
