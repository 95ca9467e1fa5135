"""Light switching schedules: API -> stored scheduler triggers -> a due run publishes setLight."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import astral.sun
import httpx
import pytest
from astral import Observer
from fastapi import FastAPI, Request

from broker import topics
from cloud.api.deps import current_org
from cloud.api.errors import install_error_table
from cloud.domains.consumer import translate
from cloud.api.routes.publiclighting import router
from cloud.domains.publiclighting.translator import DOMAIN
from cloud.domains.schemas import FunctionalRequest
from cloud.migrations import migrate
from cloud.registry import (
    DeviceCreate,
    DeviceType,
    FunctionGroup,
    OrganisationCreate,
    Protocol,
    Registry,
)
from cloud.registry.schemas import Location
from cloud.scheduler import DailyTrigger, Scheduler, ScheduleStore, SolarTrigger
from tests.cloud.core.harness import Inbox, json_of, serve, session_for
from tests.fixtures.mosquitto import MosquittoServer

LAT, LON = 52.3676, 4.9041  # Amsterdam
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
SCHEDULE = {"entries": [
    {"action": {"on": False}, "at": "23:00", "timezone": "Europe/Amsterdam"},
    {"action": {"on": True, "dimLevel": 70}, "at": "sunset", "offsetMinutes": 15},
]}


@dataclass
class Rig:
    registry: Registry
    http: httpx.AsyncClient

    async def post(self, device: str, body: dict, org: str = "org-a") -> httpx.Response:
        return await self.http.post(f"/v1/publiclighting/devices/{device}/schedule", json=body,
                                    headers={"X-Org": org})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'lights.db'}"
    await migrate(url)
    async with AsyncExitStack() as exits:
        registry = await exits.enter_async_context(Registry(url=url))
        await registry.add_organisation(OrganisationCreate(identification="org-a", name="Org A"))
        await registry.add_organisation(OrganisationCreate(identification="org-b", name="Org B"))
        await registry.create_device(DeviceCreate(identification="light-1", device_type=DeviceType.STREET_LIGHT,
                                                  protocol=Protocol.MQTT,
                                                  location=Location(latitude=LAT, longitude=LON)), owner="org-a")
        await registry.create_device(DeviceCreate(identification="light-2", device_type=DeviceType.STREET_LIGHT,
                                                  protocol=Protocol.MQTT), owner="org-a")
        await registry.grant("light-1", "org-b", FunctionGroup.AD_HOC)
        app = FastAPI()
        install_error_table(app)
        app.include_router(router)
        app.state.registry = registry
        app.state.schedules = ScheduleStore(registry.engine, clock=lambda: NOW)

        async def org_from_header(request: Request) -> str:
            return request.headers["X-Org"]

        app.dependency_overrides[current_org] = org_from_header
        base_url = await exits.enter_async_context(serve(app))
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=10))
        yield Rig(registry=registry, http=http)


def expected_sunset(day: date, offset: timedelta) -> datetime:
    return astral.sun.sunset(Observer(latitude=LAT, longitude=LON), date=day, tzinfo=UTC) + offset


async def test_schedule_is_stored_and_published_when_due(rig: Rig, mosquitto: MosquittoServer) -> None:
    answer = await rig.post("light-1", SCHEDULE)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["deviceId"] == "light-1"
    absolute, solar = body["entries"]
    # 23:00 CEST is 21:00 UTC; sunset + 15 min per astral for the light's location.
    sunset = expected_sunset(NOW.date(), timedelta(minutes=15))
    assert datetime.fromisoformat(absolute["nextRun"]) == datetime(2026, 6, 1, 21, 0, tzinfo=UTC)
    assert datetime.fromisoformat(solar["nextRun"]) == sunset
    assert solar["action"] == {"on": True, "dimLevel": 70}

    store = ScheduleStore(rig.registry.engine, clock=lambda: NOW)
    stored = await store.list_schedules(organisation="org-a")
    assert [s.id for s in stored] == [absolute["scheduleId"], solar["scheduleId"]]
    assert stored[0].trigger == DailyTrigger(times=("23:00",), timezone="Europe/Amsterdam")
    assert stored[1].trigger == SolarTrigger(event="sunset", latitude=LAT, longitude=LON, offset_seconds=900)
    assert {s.task.topic for s in stored} == {"domain/publiclighting/request/org-a"}

    listed = await rig.http.get("/v1/publiclighting/devices/light-1/schedule", headers={"X-Org": "org-a"})
    assert listed.status_code == 200 and listed.json() == body

    # A scheduler whose clock is just past the sunset entry publishes it (only it) on the domain topic.
    async with session_for(mosquitto, "gridwire-cloud") as listener, \
            session_for(mosquitto, "gridwire-cloud") as publisher:
        inbox = Inbox()
        await listener.subscribe("domain/publiclighting/request/+", inbox.handler)
        late = sunset + timedelta(seconds=30)
        runs = await Scheduler(store=ScheduleStore(rig.registry.engine, clock=lambda: late), publisher=publisher,
                               clock=lambda: late).tick()
        assert [(r.schedule_id, r.due) for r in runs] == [(solar["scheduleId"], sunset)]
        message = await inbox.wait_for(lambda m: m.topic == topics.domain_topic("publiclighting", "request", "org-a"))
    payload = json_of(message)
    assert payload["deviceId"] == "light-1" and payload["operation"] == "setLight"
    assert payload["parameters"] == {"on": True, "dimLevel": 70}
    # What the domain consumer does with it: a valid functional request for the lamp relay and dimmer.
    request = FunctionalRequest.model_validate_json(json.dumps(payload))
    commands = translate(DOMAIN, "org-a", request)
    assert [(c.name, c.parameters) for c in commands] == [("set_relay", {"index": 1, "closed": True}),
                                                           ("set_dim_level", {"percent": 70})]


async def test_posting_replaces_the_previous_schedule(rig: Rig) -> None:
    first = (await rig.post("light-1", SCHEDULE)).json()
    second = await rig.post("light-1", {"entries": [{"action": {"on": True}, "at": "sunrise",
                                                     "offsetMinutes": -30}]})
    assert second.status_code == 201, second.text
    stored = await ScheduleStore(rig.registry.engine).list_schedules(organisation="org-a")
    assert len(first["entries"]) == 2
    # Only the new entry is left (SQLite may hand a removed schedule's id to the new one).
    assert [(s.id, s.trigger) for s in stored] == [
        (second.json()["entries"][0]["scheduleId"],
         SolarTrigger(event="sunrise", latitude=LAT, longitude=LON, offset_seconds=-1800))]
    expected = astral.sun.sunrise(Observer(latitude=LAT, longitude=LON), date=date(2026, 6, 2),
                                  tzinfo=UTC) - timedelta(minutes=30)
    assert datetime.fromisoformat(second.json()["entries"][0]["nextRun"]) == expected


async def test_refused_without_the_scheduling_function(rig: Rig) -> None:
    # org-b holds AD_HOC on light-1: it may switch the light but not schedule it.
    answer = await rig.post("light-1", SCHEDULE, org="org-b")
    assert answer.status_code == 403, answer.text
    assert await ScheduleStore(rig.registry.engine).list_schedules() == []
    await rig.registry.grant("light-1", "org-b", FunctionGroup.SCHEDULING)
    assert (await rig.post("light-1", SCHEDULE, org="org-b")).status_code == 201


async def test_astronomical_entry_needs_a_location(rig: Rig) -> None:
    answer = await rig.post("light-2", SCHEDULE)
    assert answer.status_code == 422
    assert "location" in answer.json()["detail"] and "sunset" in answer.json()["detail"]
    assert await ScheduleStore(rig.registry.engine).list_schedules() == []
    # Absolute times need no location.
    absolute = await rig.post("light-2", {"entries": SCHEDULE["entries"][:1]})
    assert absolute.status_code == 201, absolute.text


async def test_bad_entries_are_rejected(rig: Rig) -> None:
    for entry in ({"action": {"on": True}, "at": "22:00"},
                  {"action": {"on": True}, "at": "sunset", "timezone": "Europe/Amsterdam"},
                  {"action": {"on": True}, "at": "25:00", "timezone": "UTC"},
                  {"action": {"on": True}, "at": "22:00", "timezone": "UTC", "offsetMinutes": 5}):
        assert (await rig.post("light-1", {"entries": [entry]})).status_code == 422, entry
