"""The cloud scheduler: persisted periodic, one-shot and sunrise/sunset schedules that publish
functional requests on MQTT, each due run exactly once across any number of processes."""

from cloud.scheduler.schemas import Run, ScheduleCreate, ScheduledTask, SchedulePublic, run_key
from cloud.scheduler.scheduler import Publisher, Scheduler
from cloud.scheduler.store import Claim, ScheduleNotFound, ScheduleStore
from cloud.scheduler.timing import (
    DailyTrigger,
    IntervalTrigger,
    MissedRunPolicy,
    OnceTrigger,
    SolarEvent,
    SolarTrigger,
    next_run,
    plan_due,
)

__all__ = [
    "Claim", "DailyTrigger", "IntervalTrigger", "MissedRunPolicy", "OnceTrigger", "Publisher", "Run",
    "ScheduleCreate", "ScheduleNotFound", "SchedulePublic", "ScheduleStore", "ScheduledTask", "Scheduler",
    "SolarEvent", "SolarTrigger", "next_run", "plan_due", "run_key",
]
