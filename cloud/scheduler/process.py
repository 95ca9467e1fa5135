"""The scheduler as a process (``gridwire cloud scheduler``): its settings and its run.

Any number may run on one database: each due schedule is claimed under a lease, so it is
published once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pydantic import Field

from cloud.runtime import connected, metrics_registry, session_metrics
from cloud.scheduler.scheduler import Scheduler
from cloud.scheduler.store import ScheduleStore
from cloud.settings import CloudSettings, Section

log = logging.getLogger(__name__)


class SchedulerOptions(Section):
    """The scheduler's own settings (``GRIDWIRE_SCHEDULER_*``)."""

    lease_seconds: float = Field(default=120.0, gt=0)
    poll_seconds: float = Field(default=5.0, gt=0)


class SchedulerSettings(CloudSettings):
    """Where the scheduler reads schedules (database) and publishes runs (broker)."""

    scheduler: SchedulerOptions = Field(default_factory=SchedulerOptions)


async def run_scheduler(settings: SchedulerSettings, stop: asyncio.Event, *,
                        ready: asyncio.Event | None = None) -> None:
    """Publish due schedules until ``stop`` is set (the database must be migrated first)."""
    async with metrics_registry("scheduler", settings.metrics) as metrics, \
            connected("scheduler", settings) as (session, registry):
        session_metrics(metrics, session)
        scheduler = Scheduler(store=ScheduleStore(registry.engine), publisher=session, instance_id=session.client_id,
                              lease=timedelta(seconds=settings.scheduler.lease_seconds),
                              poll_interval=settings.scheduler.poll_seconds)
        metrics.counter_fn("gridwire_scheduler_runs", "Schedule runs published", lambda: scheduler.runs)
        metrics.counter_fn("gridwire_scheduler_late_runs", "Runs published after their due time (recovered "
                           "after downtime)", lambda: scheduler.late_runs)
        metrics.counter_fn("gridwire_scheduler_failed_publishes", "Runs whose publish failed (retried after "
                           "the lease)", lambda: scheduler.failed_publishes)
        if ready is not None:
            ready.set()
        await scheduler.run(stop)
