"""The time service as a process: settings from ``GRIDWIRE_*`` variables, run until stopped.

Wire as ``gridwire cloud timesync``::

    settings = TimeSyncSettings()
    run_until_signal(lambda stop: run_timesync(settings, stop))
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from cloud.monitoring.notifier import Notifier
from cloud.monitoring.store import MonitoringStore
from cloud.process import CloudProcessSettings, default_client_id
from cloud.registry import Registry
from cloud.registry.db import create_engine
from cloud.timesync.service import DriftRecorder, TimeService
from cloud.timesync.store import DriftStore

log = logging.getLogger(__name__)


class TimeSyncSettings(CloudProcessSettings):
    """Where the time service listens and stores drift; e.g. ``GRIDWIRE_MQTT_HOST``."""

    timesync_client_id: str = Field(default_factory=lambda: default_client_id("timesync"))
    # Meter drift beyond this raises a CLOCK_DRIFT event for subscribed organisations.
    timesync_drift_alarm_seconds: float = Field(default=10.0, gt=0)


async def run_timesync(settings: TimeSyncSettings, stop: asyncio.Event) -> None:
    """Answer time requests and record drift reports until ``stop`` is set."""
    engine = create_engine(settings.registry_url)
    # Durable, so no drift report is lost while we restart; stale time requests are not replayed
    # because they carry a message expiry of EXCHANGE_EXPIRY_SECONDS.
    session = settings.mqtt_session(settings.timesync_client_id)
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
