"""The assembled cloud platform: every ``gridwire cloud ...`` process, by name, from one settings object.

:class:`PlatformSettings` derives from every process's settings class, so each process's
``run`` is handed the whole object and reads its own sections from it: no process can be
given less than it reads. :data:`PROCESSES` names each process's settings class and ``run``;
the CLI builds the settings class from ``GRIDWIRE_*`` variables, the demo and the tests pass
one :class:`PlatformSettings`. Start as many copies of each process as load needs: they share
their work through MQTT shared subscriptions (the scheduler and the campaign runners through
leases and compare-and-set in the database).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from cloud.api.process import ApiSettings, create_platform_app, run_api
from cloud.core.process import CoreSettings, run_core
from cloud.domains.process import DomainSettings, run_domain
from cloud.events.delivery import subscription_deliveries
from cloud.fanout.process import FanoutSettings, run_fanout
from cloud.firmware.process import CampaignSettings, FirmwareServerSettings, run_campaigns, run_firmware_server
from cloud.ingest.process import IngestSettings, run_ingest
from cloud.migrations import migrate
from cloud.monitoring.process import MonitorSettings, run_monitor
from cloud.processing.process import ProcessingSettings, run_processing
from cloud.runtime import Run
from cloud.scheduler.process import SchedulerSettings, run_scheduler
from cloud.settings import CloudSettings
from cloud.timesync.process import TimeSyncSettings, run_timesync

Runner = Callable[[asyncio.Event], Awaitable[None]]


class PlatformSettings(ApiSettings, IngestSettings, DomainSettings, SchedulerSettings, MonitorSettings,
                       TimeSyncSettings, CampaignSettings, FirmwareServerSettings, ProcessingSettings,
                       FanoutSettings):
    """Every cloud process's settings in one object (the demo, the tests, one host running all)."""


@dataclass(frozen=True, slots=True)
class Process:
    """A ``gridwire cloud`` process: the settings class it reads and its ``run``."""

    settings: type[CloudSettings]
    run: Run


PROCESSES: Mapping[str, Process] = MappingProxyType({
    "api": Process(ApiSettings, run_api),
    "ingest": Process(IngestSettings, run_ingest),
    "core": Process(CoreSettings, run_core),
    "domain": Process(DomainSettings, run_domain),
    "scheduler": Process(SchedulerSettings, run_scheduler),
    # Events monitoring raises reach subscriptions' app topics and webhooks, as device events do.
    "monitor": Process(MonitorSettings, partial(run_monitor, deliveries=subscription_deliveries)),
    "timesync": Process(TimeSyncSettings, partial(run_timesync, deliveries=subscription_deliveries)),
    "campaigns": Process(CampaignSettings, run_campaigns),
    "firmware-server": Process(FirmwareServerSettings, run_firmware_server),
    "processing": Process(ProcessingSettings, run_processing),
    "fanout": Process(FanoutSettings, run_fanout),
})


def process_runner(name: str, settings: CloudSettings, *, ready: asyncio.Event | None = None) -> Runner:
    """The ``run(stop)`` coroutine function of the process ``name`` (see :data:`PROCESSES`) on
    ``settings`` (its settings class or :class:`PlatformSettings`); ``ready`` is set once it serves."""
    if name not in PROCESSES:
        raise ValueError(f"no platform process {name!r}; choose from {', '.join(PROCESSES)}")
    process = PROCESSES[name]
    if not isinstance(settings, process.settings):
        raise TypeError(f"process {name!r} reads {process.settings.__name__}, not {type(settings).__name__}")
    return lambda stop: process.run(settings, stop, ready=ready)


async def migrate_registry(settings: CloudSettings) -> str | None:
    """Bring the platform database to the newest schema (what the API does at start)."""
    return await migrate(settings.database.url)


__all__ = ["PROCESSES", "PlatformSettings", "Process", "create_platform_app", "migrate_registry",
           "process_runner"]
