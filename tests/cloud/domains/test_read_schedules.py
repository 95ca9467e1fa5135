"""Meter-read schedules: CRUD through the API per organisation and device group; the scheduler runs
them through domain, core and concentrator to a simulated DLMS meter, each run once, also when a
scheduler dies after publishing and another takes the run over."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from broker import topics
from broker.session import MqttSession
from cloud.scheduler import Scheduler, ScheduleStore, run_key
from tests.cloud.core.harness import CONCENTRATOR, METER, ORG_A, ORG_B, Stack, session_for
from tests.cloud.domains.test_smartmetering_dlms import dlms_stack, model  # noqa: F401 - fixtures

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
HOURLY = {"kind": "interval", "everySeconds": 3600, "anchor": ANCHOR.isoformat()}


def body(**group: object) -> dict:
    return {"name": "hourly reads", "group": group or {"deviceIds": [METER]}, "trigger": HOURLY}


async def create(stack: Stack, payload: dict, *, org: str = ORG_A) -> dict:
    answer = await stack.post("/v1/smartmetering/readSchedules", payload, org=org)
    assert answer.status_code == 201, answer.text
    return answer.json()


def scheduler(stack: Stack, publisher: MqttSession, at: datetime, name: str) -> Scheduler:
    clock = lambda: at  # noqa: E731
    return Scheduler(store=ScheduleStore(stack.registry.engine, clock=clock), publisher=publisher,
                     clock=clock, instance_id=name, lease=timedelta(minutes=2))


def correlation_of(schedule_id: int, due: datetime) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, run_key(schedule_id, due)))


async def test_crud_per_organisation_and_group(stack: Stack) -> None:
    created = await create(stack, body(concentratorId=CONCENTRATOR))
    assert created["deviceIds"] == [METER] and created["group"] == {"concentratorId": CONCENTRATOR}
    assert created["name"] == "hourly reads" and created["trigger"]["everySeconds"] == 3600
    assert datetime.fromisoformat(created["nextRun"]) > datetime.now(UTC) - timedelta(hours=1)
    url = f"/v1/smartmetering/readSchedules/{created['id']}"

    listed = await stack.http.get("/v1/smartmetering/readSchedules", headers={"X-Org": ORG_A})
    assert [s["id"] for s in listed.json()] == [created["id"]]
    assert (await stack.http.get("/v1/smartmetering/readSchedules", headers={"X-Org": ORG_B})).json() == []
    assert (await stack.http.get(url, headers={"X-Org": ORG_B})).status_code == 404

    daily = {"name": "mornings", "group": {"deviceIds": [METER]},
             "trigger": {"kind": "daily", "times": ["06:00"], "timezone": "Europe/Amsterdam"}}
    replaced = await stack.http.put(url, json=daily, headers={"X-Org": ORG_A})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == created["id"] and replaced.json()["trigger"]["kind"] == "daily"
    assert datetime.fromisoformat(replaced.json()["nextRun"]).astimezone(UTC).hour in (4, 5)  # 06:00 CET/CEST
    stored = await ScheduleStore(stack.registry.engine).list_schedules(organisation=ORG_A)
    assert [s.name for s in stored] == [f"smartmetering:read:{created['id']}:{METER}"]

    assert (await stack.http.delete(url, headers={"X-Org": ORG_B})).status_code == 404
    assert (await stack.http.delete(url, headers={"X-Org": ORG_A})).status_code == 204
    assert (await stack.http.get(url, headers={"X-Org": ORG_A})).status_code == 404
    assert await ScheduleStore(stack.registry.engine).list_schedules() == []


@pytest.mark.parametrize("payload", [
    {"name": "x", "group": {}, "trigger": HOURLY},
    {"name": "x", "group": {"deviceIds": [METER], "feeder": "f-1"}, "trigger": HOURLY},
    {"name": "x", "group": {"deviceIds": []}, "trigger": HOURLY},
    {"name": "x", "group": {"deviceIds": [METER]}, "trigger": {**HOURLY, "everySeconds": 10}},
    {"name": "x", "group": {"deviceIds": [METER]}, "trigger": {"kind": "once", "at": ANCHOR.isoformat()}},
    {"name": "", "group": {"deviceIds": [METER]}, "trigger": HOURLY},
    {"name": "x", "group": {"feeder": "nowhere"}, "trigger": HOURLY},
    {"name": "x", "group": {"deviceIds": [METER]}, "trigger": HOURLY, "operation": "disconnect"},
])
async def test_bad_schedules_are_refused(stack: Stack, payload: dict) -> None:
    answer = await stack.post("/v1/smartmetering/readSchedules", payload)
    assert answer.status_code == 422, answer.text
    assert await ScheduleStore(stack.registry.engine).list_schedules() == []


async def test_every_meter_of_the_group_must_be_readable_by_the_organisation(stack: Stack) -> None:
    answer = await stack.post("/v1/smartmetering/readSchedules", body(deviceIds=[METER, "ghost-1"]))
    assert answer.status_code == 403 and "ghost-1" in answer.json()["detail"]
    answer = await stack.post("/v1/smartmetering/readSchedules", body(), org=ORG_B)
    assert answer.status_code == 403 and "GET_ACTUAL_METER_READS" in answer.json()["detail"]
    assert await ScheduleStore(stack.registry.engine).list_schedules() == []


async def test_runs_read_the_meter_once_each_even_when_a_scheduler_dies_after_publishing(dlms_stack: Stack) -> None:
    stack = dlms_stack
    publisher = await stack.exits.enter_async_context(session_for(stack.broker, "gridwire-cloud"))
    created = await create(stack, body())
    [schedule] = await ScheduleStore(stack.registry.engine).list_schedules(organisation=ORG_A)
    due = datetime.fromisoformat(created["nextRun"])

    # Two schedulers at the due time: one publishes the run, the other finds nothing to do.
    first = await scheduler(stack, publisher, due + timedelta(seconds=1), "scheduler-a").tick()
    second = await scheduler(stack, publisher, due + timedelta(seconds=1), "scheduler-b").tick()
    assert [(r.schedule_id, r.due) for r in first + second] == [(schedule.id, due)]
    note = await stack.notification(correlation_of(schedule.id, due), timeout=30)
    assert note["_topic"] == "app/org-a/smartmetering/actualReads" and note["status"] == "SUCCEEDED", note
    [reading] = note["result"]["readings"]
    assert reading["values"]["OBIS_1.8.1"]["unit"] == "kWh"

    # The next run: scheduler C publishes it and dies before recording it; D takes it over when
    # C's lease is out and publishes it again under the same idempotency key.
    later = due + timedelta(hours=1)
    dying = scheduler(stack, publisher, later + timedelta(seconds=1), "scheduler-c")
    [claim] = await dying.store.claim_due(owner="scheduler-c", lease=dying.lease)
    await dying._publish(claim)
    taken = await scheduler(stack, publisher, later + timedelta(minutes=3), "scheduler-d").tick()
    assert [(r.due, r.recovered) for r in taken] == [(later, True)]
    correlation = correlation_of(schedule.id, later)
    note = await stack.notification(correlation, timeout=30)
    assert note["status"] == "SUCCEEDED"
    # A marker request through the same path: its answer comes after any duplicate would have.
    marker = await stack.post(f"/v1/smartmetering/devices/{METER}/actualReads")
    await stack.notification(marker.json()["correlationId"], timeout=30)

    result = await stack.result("smartmetering", correlation)
    assert result["status"] == "SUCCEEDED" and len(result["commands"]) == 1
    published = [m for ms in stack.app_inbox.messages.values() for m in ms if correlation.encode() in m.payload]
    assert len(published) == 1
    assert topics.domain_topic("smartmetering", "request", ORG_A) == claim.task.topic
    [after] = await ScheduleStore(stack.registry.engine).list_schedules(organisation=ORG_A)
    assert after.run_count == 2
