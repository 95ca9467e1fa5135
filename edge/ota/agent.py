"""The concentrator's firmware agent: the ``update_firmware`` command for its DLMS meters.

For one meter, with params ``{"signedManifest": <SignedManifest JSON>}``:

1. the manifest's signature against the concentrator's trusted keys (SIGNATURE_INVALID);
2. the meter's model in the manifest's ``deviceModels`` (MODEL_MISMATCH);
3. the meter's firmware version: already the manifest's -> success, nothing sent (idempotent);
4. the image from the cache, or downloaded once for every meter that needs it
   (DOWNLOAD_FAILED; SIGNATURE_INVALID when the bytes are not the signed ones);
5. DLMS image transfer under the meter's poll lock, so its polling pauses meanwhile:
   blocks (TRANSFER_FAILED; a cut transfer resumes on the next try), verify (VERIFY_FAILED),
   activate (ACTIVATION_FAILED);
6. the version read back must be the manifest's (VERSION_MISMATCH).

Success answers ``{"firmwareVersion": ..., "imageSha256": ..., "transferred": bool}``. A failure
in steps 4 to 6 also raises the device event FIRMWARE_FAILED (through ``on_event``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from broker.lean import ContractError, DeviceEvent, DeviceEventType, EventSource
from broker.lean.firmware import METER_FIRMWARE, SignedManifest
from edge.commands.errors import CommandFailed, InvalidParameters
from edge.commands.executor import CommandHandler
from edge.commands.meter_handlers import meter_errors
from edge.dlms.errors import DlmsError
from edge.dlms.image_transfer import ImageTransferError
from firmware_ota.downloader import Downloader, DownloadFailed

log = logging.getLogger(__name__)

Exclusive = Callable[[str], AbstractAsyncContextManager[None]]


class OtaError(StrEnum):
    """The error codes of ``update_firmware`` (the OTA contract)."""

    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    MODEL_MISMATCH = "MODEL_MISMATCH"
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"
    TRANSFER_FAILED = "TRANSFER_FAILED"
    VERIFY_FAILED = "VERIFY_FAILED"
    ACTIVATION_FAILED = "ACTIVATION_FAILED"
    VERSION_MISMATCH = "VERSION_MISMATCH"


_STAGE_ERRORS = {"transfer": OtaError.TRANSFER_FAILED, "verify": OtaError.VERIFY_FAILED,
                 "activate": OtaError.ACTIVATION_FAILED}


def device_model(adapter: Any) -> str:
    """The meter's model as manifests name it: its configured model, else its profile's name."""
    return adapter.config.model or adapter.profile.name


class FirmwareAgent:
    """Builds the ``update_firmware`` handler of each DLMS meter over one shared :class:`Downloader`."""

    def __init__(self, *, downloader: Downloader, exclusive: Exclusive,
                 on_event: Callable[[list[DeviceEvent]], object] | None = None) -> None:
        self.downloader = downloader
        self._exclusive = exclusive
        self.transfers = 0
        # Where a failed transfer's FIRMWARE_FAILED event goes (the concentrator's DeviceEvents).
        self.on_event = on_event

    def route(self) -> None:
        self.downloader.route()

    async def start(self) -> None:
        await self.downloader.start()

    def handler_for(self, adapter: Any) -> CommandHandler:
        """``update_firmware`` for one :class:`edge.dlms.DlmsMeterAdapter`."""

        async def update_firmware(params: dict[str, Any]) -> dict[str, Any]:
            return await self.update(adapter, params)

        return update_firmware

    async def update(self, adapter: Any, params: dict[str, Any]) -> dict[str, Any]:
        meter_id = adapter.meter_id
        signed = signed_manifest(params)
        try:
            manifest = self.downloader.verify(signed)
        except DownloadFailed as exc:
            raise CommandFailed(exc.code, f"meter {meter_id}: {exc}") from exc
        if manifest.kind != METER_FIRMWARE:
            raise CommandFailed(OtaError.MODEL_MISMATCH, f"meter {meter_id}: {manifest.firmware_id} is "
                                f"{manifest.kind}, not meter firmware")
        model = device_model(adapter)
        if model not in manifest.device_models:
            raise CommandFailed(OtaError.MODEL_MISMATCH, f"meter {meter_id} is a {model!r}; firmware "
                                f"{manifest.firmware_id} is for {', '.join(manifest.device_models)}")
        async with meter_errors(), self._exclusive(meter_id):
            current = await adapter.read_firmware_version()
        if current == manifest.version:
            log.info("meter %s already runs %s; nothing to do", meter_id, current)
            return {"firmwareVersion": current, "imageSha256": manifest.sha256, "transferred": False}
        try:
            return await self._transfer(adapter, signed, manifest, current)
        except CommandFailed as exc:
            self._failed(meter_id, manifest, current, exc)
            raise

    def _failed(self, meter_id: str, manifest: Any, current: str, exc: CommandFailed) -> None:
        """A transfer that failed (download, blocks, verification, activation, version): FIRMWARE_FAILED."""
        if self.on_event is None:
            return
        event = DeviceEvent.make(meter_id, DeviceEventType.FIRMWARE_FAILED, datetime.now(UTC),
                                 source=EventSource.FIRMWARE, key=f"{manifest.firmware_id}:{exc.code}",
                                 firmwareId=manifest.firmware_id, version=manifest.version, running=current,
                                 error=str(exc.code), reason=str(exc)[:300], transient=bool(exc.transient))
        self.on_event([event])

    async def _transfer(self, adapter: Any, signed: SignedManifest, manifest: Any, current: str) -> dict[str, Any]:
        meter_id = adapter.meter_id
        try:
            path = await self.downloader.fetch(signed)
        except DownloadFailed as exc:
            raise CommandFailed(exc.code, f"meter {meter_id}: {exc}") from exc
        image = await asyncio.to_thread(path.read_bytes)
        identifier = manifest.image_identifier.encode()
        async with self._exclusive(meter_id):
            log.info("meter %s: firmware %s -> %s (%d bytes)", meter_id, current, manifest.version, len(image))
            try:
                await adapter.update_firmware(identifier=identifier, image=image)
            except ImageTransferError as exc:
                raise CommandFailed(_STAGE_ERRORS[exc.stage], str(exc)) from exc
            except DlmsError as exc:
                # A dropped link or a refused association: the next try resumes the blocks.
                raise CommandFailed(OtaError.TRANSFER_FAILED, str(exc), transient=exc.transient) from exc
            async with meter_errors():
                version = await adapter.read_firmware_version()
        self.transfers += 1
        if version != manifest.version:
            raise CommandFailed(OtaError.VERSION_MISMATCH, f"meter {meter_id} reports firmware {version!r} after "
                                f"activating {manifest.firmware_id}, which should be {manifest.version!r}")
        return {"firmwareVersion": version, "imageSha256": manifest.sha256, "transferred": True}


def signed_manifest(params: dict[str, Any]) -> SignedManifest:
    raw = params.get("signedManifest")
    if raw is None:
        raise InvalidParameters("update_firmware needs 'signedManifest' (a signed firmware manifest)")
    try:
        return SignedManifest.validate(raw)
    except ContractError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidParameters(f"signedManifest is not a signed firmware manifest: {problems}") from None
