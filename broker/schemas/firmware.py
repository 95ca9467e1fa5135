"""Firmware on the wire: the signed manifest, and the chunk protocol that carries an image.

The manifest says what an image is and for which devices; it rides in the ``update_firmware``
command and is the thing that is signed (``firmware_ota/signing.py``). Its canonical form is
the camelCase JSON with sorted keys and compact separators, so any party (cloud, concentrator)
that parses the wire JSON and re-serialises it gets the same bytes the signer signed.

The chunk protocol (``docs/FIRMWARE.md``, "Transfer and meters"):

- concentrator -> cloud, ``concentrator/{cid}/firmware/request``, QoS 1, a :class:`ChunkRequest`
  with MQTT 5 correlation data;
- cloud -> concentrator, ``concentrator/{cid}/firmware/chunk``, QoS 1, the raw bytes, the same
  correlation data, user properties ``firmwareId`` and ``offset``; on error an empty payload
  with user properties ``error`` (a :class:`ChunkError`) and ``reason``.

The cloud's end is ``firmware_ota/chunk_server.py``, the concentrator's ``firmware_ota/downloader.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from broker.lean.firmware import (CHUNK, CONCENTRATOR_SOFTWARE, FIRMWARE_ID_PATTERN, MAX_CHUNK, MAX_CHUNKS_PER_REQUEST,
                                  MAX_IMAGE_BYTES, METER_FIRMWARE, REQUEST, ChunkError)

__all__ = ["CHUNK", "CONCENTRATOR_SOFTWARE", "FIRMWARE_ID_PATTERN", "MAX_CHUNK", "MAX_CHUNKS_PER_REQUEST",
           "MAX_IMAGE_BYTES", "METER_FIRMWARE", "REQUEST", "ChunkError", "ChunkRequest", "FirmwareManifest",
           "ImageKind", "SignedManifest", "created_now"]

ImageKind = Literal["meter-firmware", "concentrator-software"]


class FirmwareManifest(BaseModel):
    """What a firmware image is and which devices it applies to (the signed part)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    firmware_id: str = Field(alias="firmwareId", pattern=FIRMWARE_ID_PATTERN)
    version: str = Field(min_length=1, max_length=64)
    device_models: list[str] = Field(alias="deviceModels", min_length=1, max_length=256)
    image_identifier: str = Field(alias="imageIdentifier", min_length=1, max_length=128)
    size: int = Field(gt=0, le=MAX_IMAGE_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created: AwareDatetime
    kind: ImageKind = METER_FIRMWARE

    @field_validator("device_models")
    @classmethod
    def _models_non_blank(cls, value: list[str]) -> list[str]:
        if any(not model.strip() for model in value):
            raise ValueError("device model names must not be blank")
        return value

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower_hex(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def canonical_bytes(self) -> bytes:
        """The exact bytes that are signed: camelCase JSON, sorted keys, compact separators.
        A meter firmware's manifest leaves its kind out, so manifests signed before kinds existed
        keep their signatures."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"kind"} if self.kind == METER_FIRMWARE else None)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def applies_to(self, model: str | None) -> bool:
        return model is not None and model in self.device_models


class SignedManifest(BaseModel):
    """A manifest with the Ed25519 signature over its canonical bytes and the id of the key."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    manifest: FirmwareManifest
    key_id: str = Field(alias="keyId", min_length=1, max_length=64)
    signature: str = Field(min_length=1, max_length=256)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_wire(cls, data: bytes | str) -> SignedManifest:
        return cls.model_validate_json(data)


def created_now() -> datetime:
    """A manifest creation time: aware UTC, whole seconds (stable through every JSON round trip)."""
    return datetime.now(UTC).replace(microsecond=0)


# --- the chunk protocol ------------------------------------------------------------------------

class ChunkRequest(BaseModel):
    """A request for ``count`` consecutive chunks of ``length`` bytes of an image from ``offset``."""

    # Each chunk is answered as its own message (user property ``offset``); chunks are cut at the
    # image's end (the last may be shorter, none starts past it). ``count`` 1, the default, is
    # left out on the wire, so a single-chunk request reads as it did before ``count`` existed.

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    firmware_id: str = Field(alias="firmwareId", pattern=FIRMWARE_ID_PATTERN)
    offset: int = Field(ge=0, strict=True)
    length: int = Field(ge=1, le=MAX_CHUNK, strict=True)
    count: int = Field(default=1, ge=1, le=MAX_CHUNKS_PER_REQUEST, strict=True)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_defaults=True).encode()
