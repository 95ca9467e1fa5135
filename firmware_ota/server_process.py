"""The firmware chunk server as a process (``gridwire cloud firmware-server``).

Settings from ``GRIDWIRE_*`` variables like every cloud process (:mod:`cloud.process`), plus
``GRIDWIRE_FIRMWARE_STORE_DIR`` (the :class:`FirmwareStore` directory the API adds images
to, as in :class:`cloud.platform.PlatformSettings`). Start several: they share ``$share/firmware/concentrator/+/firmware/request``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pydantic import Field

from cloud.process import CloudProcessSettings, default_client_id
from firmware_ota.store import FirmwareStore
from firmware_ota.transfer import ChunkServer

log = logging.getLogger(__name__)


class FirmwareServerSettings(CloudProcessSettings):
    """Where the images are and how this server meets the broker; e.g. ``GRIDWIRE_FIRMWARE_STORE_DIR``."""

    firmware_store_dir: Path = Path("var/firmware")
    firmware_client_id: str = Field(default_factory=lambda: default_client_id("firmware"))
    # Not durable by default: an unanswered request is simply asked again by the concentrator.
    firmware_session_expiry: int = Field(default=0, ge=0)
    firmware_inflight: int = Field(default=100, ge=1, le=65535)


async def run_firmware_server(settings: FirmwareServerSettings, stop: asyncio.Event) -> None:
    """Answer chunk requests from the store until ``stop`` is set."""
    store = FirmwareStore(root=settings.firmware_store_dir)
    session = settings.mqtt_session(settings.firmware_client_id, session_expiry=settings.firmware_session_expiry,
                                    receive_maximum=settings.firmware_inflight,
                                    max_inflight=settings.firmware_inflight)
    try:
        await session.connect()
        server = ChunkServer(session=session, store=store)
        await server.start()
        log.info("firmware server serving %d image(s) from %s", len(store.list()), store.root)
        await stop.wait()
        await session.drain(timeout=5.0)
        log.info("firmware server stopping: %d chunks (%d bytes) served, %d refused", server.chunks_served,
                 server.bytes_served, server.errors_sent)
    finally:
        await session.close()
