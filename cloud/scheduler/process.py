"""The scheduler as a process: settings from ``GRIDWIRE_*`` variables, run until stopped.

Wire as ``gridwire cloud scheduler``::

    settings = SchedulerSettings()
    run_until_signal(lambda stop: run_scheduler(settings, stop))
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pydantic import Field

from cloud.registry.db import create_engine
from cloud.scheduler.service import Scheduler
from cloud.scheduler.store import ScheduleStore

from cloud.process import CloudProcessSettings, default_client_id

log = logging.getLogger(__name__)


class SchedulerSettings(CloudProcessSettings):
    """Where the scheduler reads schedules and publishes runs; e.g. ``GRIDWIRE_REGISTRY_URL``."""

    scheduler_client_id: str = Field(default_factory=lambda: default_client_id("scheduler"))
    scheduler_lease_seconds: float = Field(default=120.0, gt=0)
    scheduler_poll_seconds: float = Field(default=5.0, gt=0)


async def run_scheduler(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    """Publish due schedules until ``stop`` is set (the registry must be migrated first)."""
    engine = create_engine(settings.registry_url)
    session = settings.mqtt_session(settings.scheduler_client_id)
    scheduler = Scheduler(store=ScheduleStore(engine), publisher=session, instance_id=settings.scheduler_client_id,
                          lease=timedelta(seconds=settings.scheduler_lease_seconds),
                          poll_interval=settings.scheduler_poll_seconds)
    try:
        await session.connect()
        await scheduler.run(stop)
    finally:
        await session.close()
        await engine.dispose()
