"""The monitor as a process (``gridwire cloud monitor``): its settings and its run."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from cloud.monitoring.monitor import StatusMonitor
from cloud.monitoring.notifier import Deliveries, Notifier, app_topics_only
from cloud.monitoring.store import MonitoringStore
from cloud.runtime import connected, metrics_registry, session_metrics
from cloud.settings import CloudSettings, Section

log = logging.getLogger(__name__)


class MonitorOptions(Section):
    """The monitor's own settings (``GRIDWIRE_MONITOR_*``)."""

    sweep_seconds: float = Field(default=60.0, gt=0)
    failures_offline: int = Field(default=3, ge=1)


class MonitorSettings(CloudSettings):
    """Where the monitor listens (broker) and keeps state (database)."""

    monitor: MonitorOptions = Field(default_factory=MonitorOptions)


async def run_monitor(settings: MonitorSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None,
                      deliveries: Deliveries = app_topics_only) -> None:
    """Consume concentrator status and sweep for silent devices until ``stop`` is set; events go
    to their subscribers through ``deliveries`` (the platform's: app topics and webhooks)."""
    async with metrics_registry("monitor", settings.metrics) as metrics, \
            connected("monitor", settings) as (session, registry), deliveries(session, registry) as deliver:
        session_metrics(metrics, session)
        store = MonitoringStore(registry.engine)

        async def fleet() -> dict[tuple[str, ...], float]:
            return {key: float(n) for key, n in (await store.counts()).items()}

        metrics.gauge_fn("gridwire_monitor_fleet", "Concentrators and devices by state (as monitoring holds them)",
                         labels=["kind", "state"], sample_async=fleet)
        monitor = StatusMonitor(store=store, registry=registry,
                                notifier=Notifier(store=store, registry=registry, publisher=session, deliver=deliver),
                                failures_offline=settings.monitor.failures_offline)
        await monitor.start(session)
        if ready is not None:
            ready.set()
        await monitor.run_sweeper(stop, interval=settings.monitor.sweep_seconds)
