"""The campaign runner as a process (``gridwire cloud campaigns``): settings from ``GRIDWIRE_*``.

Stateless apart from the database: start as many as you like; each campaign is advanced by
the runner holding its lease, and each target attempt is issued once (see
:mod:`firmware_ota.campaign_store`). The registry must be migrated first.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from pydantic import Field

from cloud.process import CloudProcessSettings, default_client_id
from cloud.registry import Registry
from cloud.registry.db import create_engine
from firmware_ota.campaign_runner import CampaignRunner
from firmware_ota.campaign_store import CampaignStore
from firmware_ota.catalogue import FirmwareCatalogue

log = logging.getLogger(__name__)


class CampaignRunnerSettings(CloudProcessSettings):
    """e.g. ``GRIDWIRE_CAMPAIGN_POLL_SECONDS``, ``GRIDWIRE_REGISTRY_URL``, ``GRIDWIRE_MQTT_HOST``."""

    campaign_client_id: str = Field(default_factory=lambda: default_client_id("campaigns"))
    # How long a runner keeps a campaign to itself without renewing; after that another takes over.
    campaign_lease_seconds: float = Field(default=30.0, gt=0)
    campaign_poll_seconds: float = Field(default=1.0, gt=0)
    # A claimed command the core has not stored after this long is published again (same id).
    campaign_republish_seconds: float = Field(default=30.0, gt=0)


async def run_campaigns(settings: CampaignRunnerSettings, stop: asyncio.Event) -> None:
    """Advance campaigns until ``stop`` is set."""
    engine = create_engine(settings.registry_url)
    session = settings.mqtt_session(settings.campaign_client_id)
    runner = CampaignRunner(store=CampaignStore(engine), catalogue=FirmwareCatalogue(engine),
                            registry=Registry(engine=engine), publisher=session,
                            runner_id=settings.campaign_client_id,
                            lease=timedelta(seconds=settings.campaign_lease_seconds),
                            republish_after=timedelta(seconds=settings.campaign_republish_seconds),
                            poll_interval=settings.campaign_poll_seconds)
    try:
        await session.connect()
        await runner.run(stop)
    finally:
        await session.close()
        await engine.dispose()
