"""Light switching schedules: API entries to scheduler schedules that publish setLight (pure).

Each entry becomes one scheduler schedule named ``publiclighting:<device>:<n>`` whose task
publishes a setLight functional request on ``domain/publiclighting/request/<org>``, the topic
the domain consumer serves. An absolute entry is a daily wall-clock trigger in its time zone;
a sunrise/sunset entry is a solar trigger at the device's registered location.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker import topics
from cloud.domains.publiclighting.translator import NAME, ScheduleTime, SetLight, TimeZoneName
from cloud.scheduler import DailyTrigger, ScheduleCreate, ScheduledTask, SchedulePublic, SolarEvent, SolarTrigger

SOLAR = ("sunrise", "sunset")
# How long a scheduled switch may wait for a consumer or a device: a light switched later
# than this after its moment is better left to the next entry.
SWITCH_TTL_SECONDS = 900
MAX_ENTRIES = 50


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class LightScheduleEntry(_Body):
    """Do ``action`` daily at ``at``: a wall-clock ``"HH:MM"`` in ``timezone``, or ``"sunrise"`` /
    ``"sunset"`` at the light's location shifted by ``offsetMinutes`` (negative = before)."""

    action: SetLight
    at: ScheduleTime
    timezone: TimeZoneName | None = Field(default=None, examples=["Europe/Amsterdam"])
    offset_minutes: int = Field(default=0, ge=-720, le=720, alias="offsetMinutes")

    @model_validator(mode="after")
    def _consistent(self) -> LightScheduleEntry:
        if self.solar:
            if self.timezone is not None:
                raise ValueError("a sunrise/sunset entry takes no timezone (the light's location decides)")
        else:
            if self.timezone is None:
                raise ValueError(f"an absolute time ({self.at}) needs a timezone")
            if self.offset_minutes:
                raise ValueError("offsetMinutes applies to sunrise/sunset entries only")
        return self

    @property
    def solar(self) -> bool:
        return self.at in SOLAR


class LightSchedule(_Body):
    """A light's whole switching schedule; replaces the previous one."""

    entries: list[LightScheduleEntry] = Field(min_length=1, max_length=MAX_ENTRIES)


class StoredEntry(_Body):
    """One stored entry: its schedule, the trigger it became and its next run (None = never)."""

    schedule_id: int = Field(alias="scheduleId")
    action: dict[str, Any]
    trigger: dict[str, Any]
    next_run: datetime | None = Field(alias="nextRun")


class LightScheduleView(_Body):
    """A light's stored schedule (the 201 answer and ``GET``)."""

    device_id: str = Field(alias="deviceId")
    entries: list[StoredEntry]


def schedule_prefix(device_id: str) -> str:
    return f"{NAME}:{device_id}"


def is_light_schedule(name: str, device_id: str) -> bool:
    """Whether a scheduler schedule called ``name`` is an entry of ``device_id``'s light schedule."""
    head, _, index = name.rpartition(":")
    return head == schedule_prefix(device_id) and index.isdigit()


def trigger_for(entry: LightScheduleEntry, location: tuple[float, float] | None) -> DailyTrigger | SolarTrigger:
    """The scheduler trigger of ``entry``; ValueError for a solar entry without a location."""
    if entry.solar:
        if location is None:
            raise ValueError(f"a {entry.at} entry needs the light's location (latitude/longitude) in the registry")
        return SolarTrigger(event=SolarEvent(entry.at), latitude=location[0], longitude=location[1],
                            offset_seconds=entry.offset_minutes * 60)
    assert entry.timezone is not None  # checked by the model
    hours, minutes = entry.at.split(":")
    return DailyTrigger(times=(time(int(hours), int(minutes)),), timezone=entry.timezone)


def switch_request(device_id: str, action: SetLight, *, issued_at: datetime) -> dict[str, Any]:
    """The setLight functional request a run publishes (JSON). No correlationId: the consumer
    gives each published run its own, so repeated runs are not taken for redeliveries."""
    return {"deviceId": device_id, "operation": "setLight",
            "parameters": action.model_dump(by_alias=True, exclude_none=True), "priority": 4,
            "ttlSeconds": SWITCH_TTL_SECONDS, "issuedAt": issued_at.astimezone(UTC).isoformat()}


def schedules_for(*, organisation: str, device_id: str, body: LightSchedule,
                  location: tuple[float, float] | None, now: datetime) -> list[ScheduleCreate]:
    """One scheduler schedule per entry; ValueError if an entry cannot be scheduled for this light."""
    topic = topics.domain_topic(NAME, "request", organisation)
    return [ScheduleCreate(name=f"{schedule_prefix(device_id)}:{n}", organisation=organisation,
                           trigger=trigger_for(entry, location),
                           task=ScheduledTask(topic=topic, payload=switch_request(device_id, entry.action,
                                                                                  issued_at=now),
                                              message_expiry=SWITCH_TTL_SECONDS))
            for n, entry in enumerate(body.entries)]


def view(device_id: str, stored: list[SchedulePublic]) -> LightScheduleView:
    """What the API shows of a light's stored schedules."""
    return LightScheduleView(deviceId=device_id, entries=[
        StoredEntry(scheduleId=s.id, action=s.task.payload.get("parameters", {}),
                    trigger=s.trigger.model_dump(mode="json", by_alias=True), nextRun=s.next_run)
        for s in stored])
