"""Light schedules on the device: API -> domain -> core -> the MQTT-native light, which keeps the
schedule, computes its sunset itself and switches at a fake-clock sunset with its link down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import astral.sun
import pytest
from astral import Observer

from broker.session import MqttSession
from cloud.registry import DeviceCreate, DeviceType, FunctionGroup, Protocol
from cloud.registry.schemas import Location
from edge.devices.street_light import StreetLightFleet
from edge.sun import sunset
from tests.cloud.core.harness import ORG_A, ORG_B, Stack, session_for
from tests.cloud.domains.test_end_to_end import _run
from tests.fixtures.clock import ManualClock

LIGHT = "light-2"
LAT, LON = 52.3676, 4.9041  # Amsterdam
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SCHEDULE = {"entries": [{"action": {"on": True, "dimLevel": 60}, "at": "sunset", "offsetMinutes": 15},
                        {"action": {"on": False}, "at": "23:30", "timezone": "Europe/Amsterdam"}]}


@dataclass
class Light:
    fleet: StreetLightFleet
    session: MqttSession
    clock: ManualClock


@pytest.fixture
async def light(stack: Stack) -> AsyncIterator[Light]:
    await stack.registry.create_device(DeviceCreate(identification=LIGHT, device_type=DeviceType.STREET_LIGHT,
                                                    protocol=Protocol.MQTT,
                                                    location=Location(latitude=LAT, longitude=LON)), owner=ORG_A)
    clock = ManualClock(NOON)
    session = session_for(stack.broker, LIGHT, client_id="device-light-2")
    await session.connect()
    fleet = StreetLightFleet(session=session, light_ids=[LIGHT], clock=clock)
    await fleet.start()
    try:
        yield Light(fleet, session, clock)
    finally:
        await session.close()


def test_the_devices_sunset_agrees_with_astral_within_minutes() -> None:
    for day in (date(2026, 3, 20), date(2026, 6, 21), date(2026, 12, 21)):
        for lat, lon in ((LAT, LON), (-33.87, 151.21), (64.1, -21.9), (0.0, -78.5)):
            expected = astral.sun.sunset(Observer(latitude=lat, longitude=lon), date=day, tzinfo=UTC)
            ours = sunset(day, lat, lon)
            assert ours is not None
            gap = abs((ours - expected).total_seconds()) % 86_400
            assert min(gap, 86_400 - gap) < 240, (day, lat, lon, ours, expected)
    assert sunset(date(2026, 6, 21), 78.2, 15.6) is None  # Svalbard: midnight sun


async def test_a_light_with_its_link_down_switches_at_its_own_sunset(stack: Stack, light: Light) -> None:
    note, result = await _run(stack, "publiclighting", f"{LIGHT}/deviceSchedule", SCHEDULE)
    assert note["_topic"] == "app/org-a/publiclighting/setDeviceSchedule"
    assert result["status"] == "SUCCEEDED", result
    assert [c["name"] for c in result["commands"]] == ["set_light_schedule"]
    assert result["result"]["entries"] == 2 and result["result"]["scheduleVersion"] > 0
    state = light.fleet.lights[LIGHT]
    assert state.schedule is not None and (state.schedule.latitude, state.schedule.longitude) == (LAT, LON)

    await light.session.close()  # the link is down from here on
    dusk = sunset(NOON.date(), LAT, LON)
    assert dusk is not None
    light.clock.now = dusk + timedelta(minutes=14)
    assert await light.fleet.tick() == [] and state.on is False
    light.clock.now = dusk + timedelta(minutes=15, seconds=5)
    assert await light.fleet.tick() == [LIGHT]
    assert (state.on, state.dim_level) == (True, 60)
    light.clock.now = datetime(2026, 6, 1, 21, 30, 5, tzinfo=UTC)  # 23:30 CEST
    assert await light.fleet.tick() == [LIGHT] and state.on is False
    light.clock.now = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)  # two days unattended: it ends off, as at 23:30
    await light.fleet.tick()
    assert state.on is False


async def test_bad_schedules_and_missing_rights_are_refused(stack: Stack, light: Light) -> None:
    post = stack.post
    for entry in ({"action": {"on": True}, "at": "22:00"}, {"action": {"on": True}, "at": "sunset", "timezone": "UTC"},
                  {"action": {"on": True}, "at": "25:00", "timezone": "UTC"},
                  {"action": {"on": True, "dimLevel": 101}, "at": "sunset"}):
        answer = await post(f"/v1/publiclighting/devices/{LIGHT}/deviceSchedule", {"entries": [entry]})
        assert answer.status_code == 422, (entry, answer.text)
    # light-1 has no registered location: sunset cannot be computed anywhere.
    answer = await post("/v1/publiclighting/devices/light-1/deviceSchedule", SCHEDULE)
    assert answer.status_code == 422 and "location" in answer.text
    answer = await post(f"/v1/publiclighting/devices/{LIGHT}/deviceSchedule", SCHEDULE, org=ORG_B)
    assert answer.status_code == 403
    await stack.registry.grant(LIGHT, ORG_B, FunctionGroup.SCHEDULING)
    assert (await post(f"/v1/publiclighting/devices/{LIGHT}/deviceSchedule", SCHEDULE, org=ORG_B)).status_code == 202
    assert light.fleet.lights[LIGHT].schedule is None or light.fleet.lights[LIGHT].schedule.version > 0
