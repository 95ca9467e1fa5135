"""The firmware table: what the filesystem store holds, for listing and for campaigns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.schemas.firmware import SignedManifest
from cloud.firmware.models import FirmwareRow
from cloud.firmware.schemas import FirmwarePublic
from cloud.registry.models import utcnow
from firmware_ota.errors import FirmwareNotFound


class FirmwareCatalogue:
    """Firmware metadata and signed manifests in the registry database."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    async def record(self, signed: SignedManifest, *, uploaded_by: str) -> FirmwarePublic:
        """Record a firmware the store accepted; a second upload of the same one changes nothing."""
        m = signed.manifest
        row = {"firmware_id": m.firmware_id, "version": m.version, "device_models": list(m.device_models),
               "image_identifier": m.image_identifier, "size": m.size, "sha256": m.sha256,
               "key_id": signed.key_id, "signed_manifest": signed.model_dump(mode="json", by_alias=True),
               "manifest_created": m.created, "uploaded_by": uploaded_by, "uploaded_at": self._clock()}
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        async with self._sessions.begin() as session:
            await session.execute(insert(FirmwareRow).values(row).on_conflict_do_nothing())
        return await self.get(m.firmware_id)

    async def get(self, firmware_id: str) -> FirmwarePublic:
        return _public(await self._row(firmware_id))

    async def signed(self, firmware_id: str) -> SignedManifest:
        return SignedManifest.model_validate((await self._row(firmware_id)).signed_manifest)

    async def _row(self, firmware_id: str) -> FirmwareRow:
        async with self._sessions() as session:
            row = await session.get(FirmwareRow, firmware_id)
        if row is None:
            raise FirmwareNotFound(firmware_id)
        return row

    async def list(self) -> list[FirmwarePublic]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(FirmwareRow).order_by(FirmwareRow.firmware_id))).all()
        return [_public(r) for r in rows]


def _public(row: FirmwareRow) -> FirmwarePublic:
    return FirmwarePublic(firmware_id=row.firmware_id, version=row.version, device_models=list(row.device_models),
                          image_identifier=row.image_identifier, size=row.size, sha256=row.sha256, key_id=row.key_id,
                          manifest_created=row.manifest_created, uploaded_by=row.uploaded_by,
                          uploaded_at=row.uploaded_at)
