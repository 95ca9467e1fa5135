"""The time service as a process (``gridwire cloud timesync``): its settings and its run."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from cloud.monitoring.notifier import Deliveries, Notifier, app_topics_only
from cloud.monitoring.store import MonitoringStore
from cloud.runtime import connected, metrics_registry, session_metrics
from cloud.settings import CloudSettings, Section
from cloud.timesync.consumer import DriftRecorder, TimeService
from cloud.timesync.store import DriftStore

log = logging.getLogger(__name__)

DRIFT_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class TimeSyncOptions(Section):
    """The time service's own settings (``GRIDWIRE_TIMESYNC_*``)."""

    # Meter drift beyond this raises a CLOCK_DRIFT event for subscribed organisations.
    drift_alarm_seconds: float = Field(default=10.0, gt=0)


class TimeSyncSettings(CloudSettings):
    """Where the time service listens (broker) and stores drift (database)."""

    timesync: TimeSyncOptions = Field(default_factory=TimeSyncOptions)


async def run_timesync(settings: TimeSyncSettings, stop: asyncio.Event, *,
                       ready: asyncio.Event | None = None, deliveries: Deliveries = app_topics_only) -> None:
    """Answer time requests and record drift reports until ``stop`` is set; CLOCK_DRIFT events go
    to their subscribers through ``deliveries`` (the platform's: app topics and webhooks)."""
    # Durable, so no drift report is lost while we restart; stale time requests are not replayed
    # because they carry a message expiry of EXCHANGE_EXPIRY_SECONDS.
    async with metrics_registry("timesync", settings.metrics) as metrics, \
            connected("timesync", settings) as (session, registry), deliveries(session, registry) as deliver:
        session_metrics(metrics, session)
        notifier = Notifier(store=MonitoringStore(registry.engine), registry=registry, publisher=session,
                            deliver=deliver)
        drift = metrics.histogram("gridwire_timesync_drift_seconds", "Absolute meter clock drift per report",
                                  buckets=DRIFT_BUCKETS)
        recorder = DriftRecorder(store=DriftStore(registry.engine), notifier=notifier,
                                 alarm_seconds=settings.timesync.drift_alarm_seconds, drift=drift)
        service = TimeService(session=session)
        metrics.counter_fn("gridwire_timesync_requests", "Time requests answered", lambda: service.answered)
        metrics.counter_fn("gridwire_timesync_drift_alarms", "Drift reports over the alarm threshold",
                           lambda: recorder.alarms)
        await service.start()
        await recorder.start(session)
        if ready is not None:
            ready.set()
        await stop.wait()
