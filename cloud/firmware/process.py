"""Firmware OTA's two processes: their settings and their runs.

- ``gridwire cloud campaigns`` (:func:`run_campaigns`): advances campaigns. Stateless apart from
  the database: start as many as you like; each campaign is advanced by the runner holding its
  lease, and each target attempt is issued once (see :mod:`cloud.firmware.campaign_store`).
- ``gridwire cloud firmware-server`` (:func:`run_firmware_server`): serves image chunks to
  concentrators from the :class:`FirmwareStore` the API adds images to. Start several: they
  share ``$share/firmware/concentrator/+/firmware/request``.

The database must be migrated first.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pydantic import Field

from cloud.firmware.campaign_runner import CampaignRunner
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.runtime import connected, connected_session, metrics_registry, session_metrics
from cloud.settings import CloudSettings, FirmwareOptions, Section
from firmware_ota.chunk_server import ChunkServer
from firmware_ota.store import FirmwareStore

log = logging.getLogger(__name__)


class CampaignOptions(Section):
    """The campaign runner's own settings (``GRIDWIRE_CAMPAIGN_*``)."""

    # How long a runner keeps a campaign to itself without renewing; after that another takes over.
    lease_seconds: float = Field(default=30.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    # A claimed command the core has not stored after this long is published again (same id).
    republish_seconds: float = Field(default=30.0, gt=0)


class CampaignSettings(CloudSettings):
    """What a campaign runner reads: broker, database and its own section."""

    campaign: CampaignOptions = Field(default_factory=CampaignOptions)


async def run_campaigns(settings: CampaignSettings, stop: asyncio.Event, *,
                        ready: asyncio.Event | None = None) -> None:
    """Advance campaigns until ``stop`` is set."""
    options = settings.campaign
    async with metrics_registry("campaigns", settings.metrics) as metrics, \
            connected("campaigns", settings) as (session, registry):
        session_metrics(metrics, session)
        store = CampaignStore(registry.engine)

        async def counts() -> dict[tuple[str, ...], float]:
            return {key: float(n) for key, n in (await store.fleet_counts()).items()}

        metrics.gauge_fn("gridwire_campaign_objects", "Campaigns by state, and targets of active campaigns by state",
                         labels=["kind", "state"], sample_async=counts)
        runner = CampaignRunner(store=store, catalogue=FirmwareCatalogue(registry.engine),
                                registry=registry, publisher=session, runner_id=session.client_id,
                                lease=timedelta(seconds=options.lease_seconds),
                                republish_after=timedelta(seconds=options.republish_seconds),
                                poll_interval=options.poll_seconds)
        metrics.counter_fn("gridwire_campaign_commands", "update_firmware commands published (sends and re-sends)",
                           lambda: runner.published)
        if ready is not None:
            ready.set()
        await runner.run(stop)


class FirmwareServerSettings(CloudSettings):
    """Where the images are (``GRIDWIRE_FIRMWARE_STORE_DIR``) and how the server meets the broker."""

    firmware: FirmwareOptions = Field(default_factory=FirmwareOptions)


async def run_firmware_server(settings: FirmwareServerSettings, stop: asyncio.Event, *,
                              ready: asyncio.Event | None = None) -> None:
    """Answer chunk requests from the store until ``stop`` is set."""
    store = FirmwareStore(root=settings.firmware.store_dir)
    async with metrics_registry("firmware-server", settings.metrics) as metrics, \
            connected_session("firmware", settings.mqtt, session_expiry=settings.firmware.session_expiry) as session:
        session_metrics(metrics, session)
        server = ChunkServer(session=session, store=store)
        metrics.counter_fn("gridwire_firmware_chunks_served", "Image chunks sent", lambda: server.chunks_served)
        metrics.counter_fn("gridwire_firmware_bytes_served", "Image bytes sent", lambda: server.bytes_served)
        metrics.counter_fn("gridwire_firmware_chunk_errors", "Chunk requests answered with an error",
                           lambda: server.errors_sent)
        await server.start()
        log.info("firmware server serving %d image(s) from %s", len(store.list()), store.root)
        if ready is not None:
            ready.set()
        await stop.wait()
        await session.drain(timeout=5.0)
        log.info("firmware server stopping: %d chunks (%d bytes) served, %d refused", server.chunks_served,
                 server.bytes_served, server.errors_sent)
