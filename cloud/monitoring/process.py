"""The monitor as a process: settings from ``GRIDWIRE_*`` variables, run until stopped.

Wire as ``gridwire cloud monitor``::

    settings = MonitorSettings()
    run_until_signal(lambda stop: run_monitor(settings, stop))
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from cloud.monitoring.monitor import StatusMonitor
from cloud.monitoring.notifier import Notifier
from cloud.monitoring.store import MonitoringStore
from cloud.process import CloudProcessSettings, default_client_id
from cloud.registry import Registry
from cloud.registry.db import create_engine

log = logging.getLogger(__name__)


class MonitorSettings(CloudProcessSettings):
    """Where the monitor listens and keeps state; e.g. ``GRIDWIRE_MQTT_HOST``, ``GRIDWIRE_REGISTRY_URL``."""

    # Stable per process so a restarted process resumes its durable session.
    monitor_client_id: str = Field(default_factory=lambda: default_client_id("monitor"))
    monitor_sweep_seconds: float = Field(default=60.0, gt=0)
    monitor_failures_offline: int = Field(default=3, ge=1)


async def run_monitor(settings: MonitorSettings, stop: asyncio.Event) -> None:
    """Consume concentrator status and sweep for silent devices until ``stop`` is set."""
    engine = create_engine(settings.registry_url)
    registry = Registry(engine=engine)
    session = settings.mqtt_session(settings.monitor_client_id)
    store = MonitoringStore(engine)
    monitor = StatusMonitor(store=store, registry=registry,
                            notifier=Notifier(store=store, registry=registry, publisher=session),
                            failures_offline=settings.monitor_failures_offline)
    try:
        await session.connect()
        await monitor.start(session)
        await monitor.run_sweeper(stop, interval=settings.monitor_sweep_seconds)
    finally:
        await session.close()
        await engine.dispose()
