"""The time service as a process: settings from ``GRIDWIRE_*`` variables, run until stopped.

Wire as ``gridwire cloud timesync``::

    settings = TimeSyncSettings()
    run_until_signal(lambda stop: run_timesync(settings, stop))
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.session import MqttSession
from cloud.monitoring.notifier import Notifier
from cloud.monitoring.store import MonitoringStore
from cloud.registry import Registry
from cloud.registry.db import create_engine
from cloud.timesync.service import DriftRecorder, TimeService
from cloud.timesync.store import DriftStore

log = logging.getLogger(__name__)


class TimeSyncSettings(BaseSettings):
    """Where the time service listens and stores drift; e.g. ``GRIDWIRE_MQTT_HOST``."""

    model_config = SettingsConfigDict(env_prefix="GRIDWIRE_", extra="ignore")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "gridwire-cloud"
    mqtt_password: SecretStr | None = None
    registry_url: str = "sqlite+aiosqlite:///var/gridwire-registry.sqlite"
    timesync_client_id: str = Field(default_factory=lambda: f"timesync-{socket.gethostname()}-{os.getpid()}")
    # Meter drift beyond this raises a CLOCK_DRIFT event for subscribed organisations.
    timesync_drift_alarm_seconds: float = Field(default=10.0, gt=0)


async def run_timesync(settings: TimeSyncSettings, stop: asyncio.Event) -> None:
    """Answer time requests and record drift reports until ``stop`` is set."""
    engine = create_engine(settings.registry_url)
    # Durable, so no drift report is lost while we restart; stale time requests are not replayed
    # because they carry a message expiry of EXCHANGE_EXPIRY_SECONDS.
    session = MqttSession(client_id=settings.timesync_client_id, host=settings.mqtt_host, port=settings.mqtt_port,
                          username=settings.mqtt_username,
                          password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None)
    notifier = Notifier(store=MonitoringStore(engine), registry=Registry(engine=engine), publisher=session)
    recorder = DriftRecorder(store=DriftStore(engine), notifier=notifier,
                             alarm_seconds=settings.timesync_drift_alarm_seconds)
    try:
        await session.connect()
        await TimeService(session=session).start()
        await recorder.start(session)
        await stop.wait()
    finally:
        await session.close()
        await engine.dispose()
