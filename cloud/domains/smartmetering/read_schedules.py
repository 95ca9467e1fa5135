"""Meter-read schedules: an organisation's periodic reads of a device group, as scheduler schedules (pure).

A read schedule names a device group (a list of meters, or every meter the organisation holds
on a feeder or behind a concentrator, resolved when the schedule is stored or replaced) and a trigger
(every N seconds, or daily at wall-clock times). It becomes one scheduler schedule per meter,
named ``smartmetering:read:<schedule id>:<meter>``, whose task publishes an ``actualReads``
functional request on ``domain/smartmetering/request/<org>``. The scheduler's claim and lease
publish each run once across any number of scheduler processes, and the domain consumer makes
a run's request id from the run's idempotency key, so a republished run stays one request. The
schedule's name and group travel in each task's payload under ``readSchedule`` (the domain
consumer ignores that field), so no table of its own is needed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from broker import topics
from cloud.domains.smartmetering.translator import NAME
from cloud.scheduler import DailyTrigger, IntervalTrigger, MissedRunPolicy, ScheduleCreate, ScheduledTask, SchedulePublic

MAX_DEVICES = 1000
MIN_INTERVAL_SECONDS = 60
# A read later than this after its due time is left to the next run.
READ_TTL_SECONDS = 900
PREFIX = f"{NAME}:read"
OPERATION = "actualReads"

ReadTrigger = Annotated[IntervalTrigger | DailyTrigger, Field(discriminator="kind")]


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class DeviceGroup(_Body):
    """Which meters: ``deviceIds``, or the organisation's meters on one ``feeder`` or behind one
    ``concentratorId`` (exactly one of the three)."""

    device_ids: list[str] | None = Field(default=None, alias="deviceIds", min_length=1, max_length=MAX_DEVICES)
    feeder: str | None = Field(default=None, min_length=1, max_length=64)
    concentrator_id: str | None = Field(default=None, alias="concentratorId", min_length=1, max_length=64)

    @field_validator("device_ids")
    @classmethod
    def _distinct(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None:
            if any(not i or len(i) > 64 for i in ids):
                raise ValueError("a device id is 1..64 characters")
            return list(dict.fromkeys(ids))
        return ids

    @model_validator(mode="after")
    def _one_kind(self) -> DeviceGroup:
        given = [v for v in (self.device_ids, self.feeder, self.concentrator_id) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of deviceIds, feeder and concentratorId")
        return self


class ReadScheduleBody(_Body):
    """A meter-read schedule as created or replaced."""

    name: str = Field(min_length=1, max_length=64)
    group: DeviceGroup
    trigger: ReadTrigger
    missed_policy: MissedRunPolicy = Field(default=MissedRunPolicy.RUN_ONCE, alias="missedPolicy")
    enabled: bool = True

    @field_validator("trigger")
    @classmethod
    def _not_too_often(cls, trigger: IntervalTrigger | DailyTrigger) -> IntervalTrigger | DailyTrigger:
        if isinstance(trigger, IntervalTrigger) and trigger.every_seconds < MIN_INTERVAL_SECONDS:
            raise ValueError(f"a meter-read schedule runs at most every {MIN_INTERVAL_SECONDS} s")
        return trigger


class ReadScheduleView(_Body):
    """A stored meter-read schedule (201, GET, PUT)."""

    id: str
    name: str
    organisation: str
    group: dict[str, Any]
    device_ids: list[str] = Field(alias="deviceIds")
    trigger: dict[str, Any]
    enabled: bool
    next_run: datetime | None = Field(alias="nextRun")
    last_run: datetime | None = Field(alias="lastRun")
    run_count: int = Field(alias="runCount")


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def schedule_name(read_id: str, device_id: str) -> str:
    return f"{PREFIX}:{read_id}:{device_id}"


def read_id_of(name: str) -> str | None:
    """The read schedule a scheduler schedule belongs to, or None for any other schedule."""
    head, _, rest = name.partition(f"{PREFIX}:")
    if head or not rest:
        return None
    read_id, _, device = rest.partition(":")
    return read_id if read_id and device else None


def read_request(device_id: str, *, read_id: str, body: ReadScheduleBody, issued_at: datetime) -> dict[str, Any]:
    """The functional request each run publishes; ``readSchedule`` is metadata the consumer ignores."""
    return {"deviceId": device_id, "operation": OPERATION, "parameters": {}, "priority": 5,
            "ttlSeconds": READ_TTL_SECONDS, "issuedAt": issued_at.astimezone(UTC).isoformat(),
            "readSchedule": {"id": read_id, "name": body.name,
                             "group": body.group.model_dump(mode="json", by_alias=True, exclude_none=True)}}


def schedules_for(*, organisation: str, read_id: str, body: ReadScheduleBody, devices: list[str],
                  now: datetime) -> list[ScheduleCreate]:
    """One scheduler schedule per meter of the group."""
    topic = topics.domain_topic(NAME, "request", organisation)
    return [ScheduleCreate(name=schedule_name(read_id, device), organisation=organisation, trigger=body.trigger,
                           task=ScheduledTask(topic=topic, payload=read_request(device, read_id=read_id, body=body,
                                                                                issued_at=now),
                                              message_expiry=READ_TTL_SECONDS),
                           missed_policy=body.missed_policy, enabled=body.enabled)
            for device in devices]


def group_schedules(stored: list[SchedulePublic]) -> dict[str, list[SchedulePublic]]:
    """An organisation's scheduler schedules by the read schedule they belong to."""
    grouped: dict[str, list[SchedulePublic]] = defaultdict(list)
    for schedule in stored:
        read_id = read_id_of(schedule.name)
        if read_id is not None:
            grouped[read_id].append(schedule)
    return dict(grouped)


def view(read_id: str, members: list[SchedulePublic]) -> ReadScheduleView:
    """What the API shows of one read schedule (its members share trigger, name and group)."""
    first = members[0]
    meta = first.task.payload.get("readSchedule", {})
    runs = [m.next_run for m in members if m.next_run is not None]
    last = [m.last_run for m in members if m.last_run is not None]
    return ReadScheduleView(id=read_id, name=meta.get("name", ""), organisation=first.organisation,
                            group=meta.get("group", {}),
                            deviceIds=sorted(m.task.payload["deviceId"] for m in members),
                            trigger=first.trigger.model_dump(mode="json", by_alias=True),
                            enabled=all(m.enabled for m in members), nextRun=min(runs) if runs else None,
                            lastRun=max(last) if last else None, runCount=max(m.run_count for m in members))
