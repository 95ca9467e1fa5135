"""The cloud keeps each light's own schedule and sends it again when the light comes back without
it: a light whose link is down while its schedule changes gets the new one once when it
reconnects, and then switches at its own fake-clock sunset as the new schedule says.

Real Mosquitto, the registry database, the API, domain, core and results consumers, the keeper
(as the domain process runs it), and the light's MQTT session through a relay that takes its
network away. The light's broker session does not outlive a connection, so a command published
while it is away is lost at the broker: only the keeper's re-send brings the new schedule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.session import Backoff, MqttSession
from cloud.domains.device_schedules import DeviceScheduleStore
from cloud.domains.process import resend_as_requested
from cloud.domains.publiclighting.keeper import LightScheduleKeeper
from cloud.registry import DeviceCreate, DeviceType, Protocol
from cloud.registry.schemas import Location
from edge.devices.street_light import StreetLightFleet
from edge.sun import sunset
from tests.cloud.core.harness import ORG_A, Stack, session_for
from tests.cloud.domains.test_end_to_end import _run
from tests.fixtures.clock import ManualClock
from tests.fixtures.relay import TcpRelay
from tests.fixtures.waiting import poll_until, wait_for

LIGHT = "light-3"
LAT, LON = 52.3676, 4.9041  # Amsterdam
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OFF = {"action": {"on": False}, "at": "23:30", "timezone": "Europe/Amsterdam"}
FIRST = {"entries": [{"action": {"on": True, "dimLevel": 60}, "at": "sunset", "offsetMinutes": 15}, OFF]}
SECOND = {"entries": [{"action": {"on": True, "dimLevel": 80}, "at": "sunset", "offsetMinutes": 45}, OFF]}


@dataclass
class Light:
    fleet: StreetLightFleet
    session: MqttSession
    relay: TcpRelay
    clock: ManualClock
    keeper: LightScheduleKeeper


@pytest.fixture
async def light(stack: Stack) -> AsyncIterator[Light]:
    await stack.registry.create_device(DeviceCreate(identification=LIGHT, device_type=DeviceType.STREET_LIGHT,
                                                    protocol=Protocol.MQTT,
                                                    location=Location(latitude=LAT, longitude=LON)), owner=ORG_A)
    keeper_session = session_for(stack.broker, "gridwire-cloud")
    await keeper_session.connect()
    keeper = LightScheduleKeeper(session=keeper_session, store=DeviceScheduleStore(stack.registry.engine),
                                 resend=resend_as_requested(session=keeper_session, registry=stack.registry,
                                                            requests=stack.requests))
    await keeper.start()
    relay = TcpRelay(target_port=stack.broker.port)
    await relay.up()
    # No session expiry: the broker keeps nothing for the light while it is away.
    session = MqttSession(client_id="device-light-3", host="127.0.0.1", port=relay.port, session_expiry=0,
                          backoff=Backoff(initial=0.05, maximum=0.3), **stack.broker.credentials(LIGHT))
    await session.connect()
    clock = ManualClock(NOON)
    fleet = StreetLightFleet(session=session, light_ids=[LIGHT], clock=clock)
    await fleet.start()
    stop = asyncio.Event()
    births = asyncio.create_task(fleet.run_births(stop), name="light-3 births")
    try:
        yield Light(fleet, session, relay, clock, keeper)
    finally:
        stop.set()
        await births
        await session.close()
        await relay.down()
        await keeper_session.close()


async def kept(stack: Stack) -> dict[str, Any]:
    answer = await stack.http.get(f"/v1/publiclighting/devices/{LIGHT}/deviceSchedule", headers={"X-Org": ORG_A})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def link_down(light: Light) -> None:
    await light.relay.down()
    await wait_for(lambda: not light.session.connected.is_set(), timeout=10, what="the light to lose its link")


async def test_a_light_back_without_its_new_schedule_gets_it_once_and_switches_by_it(stack: Stack,
                                                                                   light: Light) -> None:
    state = light.fleet.lights[LIGHT]
    _, result = await _run(stack, "publiclighting", f"{LIGHT}/deviceSchedule", FIRST)
    assert result["status"] == "SUCCEEDED", result
    first = await poll_until(lambda: kept(stack), lambda k: k["confirmed"], timeout=20,
                             what="the light to report holding the first schedule")
    assert first["resends"] == 0 and first["reportedVersion"] == first["version"] == state.schedule.version

    await link_down(light)
    answer = await stack.post(f"/v1/publiclighting/devices/{LIGHT}/deviceSchedule", SECOND)
    assert answer.status_code == 202, answer.text
    changed = await kept(stack)
    assert changed["version"] > first["version"] and changed["confirmed"] is False
    assert changed["sentCorrelationId"] == answer.json()["correlationId"]
    assert changed["reportedVersion"] == first["version"]

    await light.relay.up()  # the light reconnects and is born holding the first version
    second = await poll_until(lambda: kept(stack), lambda k: k["confirmed"], timeout=30,
                              what="the light to report holding the second schedule")
    assert second["version"] == changed["version"] and second["resends"] == 1
    assert second["sentCorrelationId"] != answer.json()["correlationId"]
    note = await stack.notification(second["sentCorrelationId"], timeout=20)
    assert note["status"] == "SUCCEEDED" and note["_topic"] == "app/org-a/publiclighting/setDeviceSchedule"
    assert state.schedule is not None and state.schedule.version == second["version"]
    # Two schedules taken, each once: the command sent while the light was away never reached it.
    assert state.schedules_taken == 2 and light.fleet.commands_handled == 2 and light.fleet.repeats == 0

    # Back again holding the version it should: nothing is sent.
    await link_down(light)
    await light.relay.up()
    again = await poll_until(lambda: kept(stack), lambda k: k["reportedAt"] != second["reportedAt"], timeout=30,
                             what="the light's next birth")
    assert again["confirmed"] and again["resends"] == 1 and light.fleet.commands_handled == 2
    assert light.keeper.resent == 1

    # With its link down, it switches at its own sunset as the second schedule says (+45 min, 80 %).
    await link_down(light)
    dusk = sunset(NOON.date(), LAT, LON)
    assert dusk is not None
    light.clock.now = dusk + timedelta(minutes=44)
    assert await light.fleet.tick() == [] and state.on is False
    light.clock.now = dusk + timedelta(minutes=45, seconds=5)
    assert await light.fleet.tick() == [LIGHT]
    assert (state.on, state.dim_level) == (True, 80)


async def test_bad_or_foreign_statuses_are_dropped_and_the_keeper_keeps_going(stack: Stack, light: Light) -> None:
    from broker.session import Message

    _, result = await _run(stack, "publiclighting", f"{LIGHT}/deviceSchedule", FIRST)
    assert result["status"] == "SUCCEEDED", result
    held = await poll_until(lambda: kept(stack), lambda k: k["confirmed"], timeout=20, what="the first schedule")
    topic = f"device/{LIGHT}/status"
    at = datetime.now(UTC).isoformat()
    born_elsewhere = {"deviceId": "light-1", "on": False, "dimLevel": 0, "relays": [], "birth": True, "at": at}
    for payload in (b"not json", b"{}", b"", json_bytes(born_elsewhere),
                    f'{{"deviceId": "{LIGHT}", "on": true, "dimLevel": 101, "relays": [], "birth": true, '
                    f'"at": "{at}"}}'.encode()):
        await light.keeper.handle(Message(topic=topic, payload=payload, qos=1, retain=False))
    # A birth older than what the keeper holds (a late copy) changes nothing either.
    stale = (f'{{"deviceId": "{LIGHT}", "on": false, "dimLevel": 100, "relays": [], "birth": true, '
             f'"at": "{(NOON - timedelta(days=365)).isoformat()}"}}').encode()
    await light.keeper.handle(Message(topic=topic, payload=stale, qos=1, retain=False))
    # A light the cloud keeps no schedule for: nothing recorded, nothing sent.
    await light.keeper.handle(Message(topic="device/light-1/status", payload=json_bytes(born_elsewhere), qos=1,
                                      retain=False))
    assert await kept(stack) == held and light.keeper.resent == 0
    # A birth without the schedule (the light was reset) is sent it again.
    reset = {"deviceId": LIGHT, "on": False, "dimLevel": 100, "relays": [{"index": 1, "closed": False}],
             "birth": True, "at": datetime.now(UTC).isoformat()}
    await light.keeper.handle(Message(topic=topic, payload=json_bytes(reset), qos=1, retain=False))
    assert light.keeper.resent == 1
    again = await poll_until(lambda: kept(stack), lambda k: k["confirmed"] and k["resends"] == 1, timeout=20,
                             what="the re-sent schedule to be confirmed")
    assert again["version"] == held["version"]
    # The light already held it: taken once, answered again without starting over.
    assert light.fleet.lights[LIGHT].schedules_taken == 1


def json_bytes(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()
