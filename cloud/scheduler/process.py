"""The scheduler as a process: settings from ``GRIDWIRE_*`` variables, run until stopped.

Wire as ``gridwire cloud scheduler``::

    settings = SchedulerSettings()
    run_until_signal(lambda stop: run_scheduler(settings, stop))
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.session import MqttSession
from cloud.registry.db import create_engine
from cloud.scheduler.service import Scheduler
from cloud.scheduler.store import ScheduleStore

log = logging.getLogger(__name__)


class SchedulerSettings(BaseSettings):
    """Where the scheduler reads schedules and publishes runs; e.g. ``GRIDWIRE_REGISTRY_URL``."""

    model_config = SettingsConfigDict(env_prefix="GRIDWIRE_", extra="ignore")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "gridwire-cloud"
    mqtt_password: SecretStr | None = None
    registry_url: str = "sqlite+aiosqlite:///var/gridwire-registry.sqlite"
    scheduler_client_id: str = Field(default_factory=lambda: f"scheduler-{socket.gethostname()}-{os.getpid()}")
    scheduler_lease_seconds: float = Field(default=120.0, gt=0)
    scheduler_poll_seconds: float = Field(default=5.0, gt=0)


async def run_scheduler(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    """Publish due schedules until ``stop`` is set (the registry must be migrated first)."""
    engine = create_engine(settings.registry_url)
    session = MqttSession(client_id=settings.scheduler_client_id, host=settings.mqtt_host, port=settings.mqtt_port,
                          username=settings.mqtt_username,
                          password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None)
    scheduler = Scheduler(store=ScheduleStore(engine), publisher=session, instance_id=settings.scheduler_client_id,
                          lease=timedelta(seconds=settings.scheduler_lease_seconds),
                          poll_interval=settings.scheduler_poll_seconds)
    try:
        await session.connect()
        await scheduler.run(stop)
    finally:
        await session.close()
        await engine.dispose()
