"""Schedules at the boundary: what a caller creates and what the scheduler reports back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from broker.topics import TopicError, validate_publish_topic
from cloud.scheduler.timing import MissedRunPolicy, Trigger


class ScheduledTask(BaseModel):
    """What a run does: publish this functional request (JSON) on this topic."""

    model_config = ConfigDict(populate_by_name=True)

    topic: str = Field(min_length=1, max_length=1024)
    payload: dict[str, Any]
    # Seconds the broker keeps the request for a consumer that is not there; None = forever.
    message_expiry: int | None = Field(default=None, gt=0, alias="messageExpiry")

    @field_validator("topic")
    @classmethod
    def _publishable(cls, value: str) -> str:
        try:
            return validate_publish_topic(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from exc


class ScheduleCreate(BaseModel):
    """A new schedule: a trigger, a task, and what to do about runs missed while we were down."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=1, max_length=128)
    organisation: str = Field(min_length=1, max_length=64)
    trigger: Trigger
    task: ScheduledTask
    missed_policy: MissedRunPolicy = Field(default=MissedRunPolicy.RUN_ONCE, alias="missedPolicy")
    # A run at most this late counts as on time (a scheduler busy or restarting briefly).
    grace_seconds: int = Field(default=60, ge=0, le=86400, alias="graceSeconds")
    enabled: bool = True


class SchedulePublic(ScheduleCreate):
    """A stored schedule with its progress."""

    id: int
    next_run: datetime | None = Field(alias="nextRun")
    last_run: datetime | None = Field(alias="lastRun")
    run_count: int = Field(alias="runCount")
    skipped_count: int = Field(alias="skippedCount")


class Run(BaseModel):
    """One execution of a schedule, as published (``key`` is its idempotency key)."""

    schedule_id: int
    due: datetime
    published_at: datetime
    late: bool
    recovered: bool = False

    @property
    def key(self) -> str:
        return run_key(self.schedule_id, self.due)


def run_key(schedule_id: int, due: datetime) -> str:
    """The idempotency key of a run: the same for a republish after a crash, unique otherwise."""
    return f"schedule:{schedule_id}:{due.isoformat()}"
