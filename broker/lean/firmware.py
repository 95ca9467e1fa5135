"""Firmware on the wire, lean: the signed manifest and the chunk request the concentrator sends (the
contract's pydantic models, the signing rules and the chunk protocol: broker/schemas/firmware.py)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from broker.lean.base import (BadValue, Check, Field, Lean, aware_datetime, constant, integer, json_bytes, list_of,
                              model, text)

# Safe as an MQTT topic level and as a directory name: no "/", "+", "#", NUL, no leading "." or "$".
FIRMWARE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# What an image is for: a meter's firmware (DLMS image transfer), or the concentrator's own
# software (an A/B install on the appliance, edge/selfupdate).
METER_FIRMWARE = "meter-firmware"
CONCENTRATOR_SOFTWARE = "concentrator-software"
MAX_CHUNK = 65536
# Chunks one request may ask for (each answered as its own message).
MAX_CHUNKS_PER_REQUEST = 64
# The last topic level of a request and of its answer (``topics.concentrator_firmware(cid, ...)``).
REQUEST = "request"
CHUNK = "chunk"


class ChunkError(StrEnum):
    """Why a chunk request was not served (user property ``error`` of the answer)."""

    UNKNOWN_FIRMWARE = "UNKNOWN_FIRMWARE"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    BAD_REQUEST = "BAD_REQUEST"


def _models_non_blank(check: Check) -> Check:
    def inner(value: Any) -> list[str]:
        out = check(value)
        if any(not item.strip() for item in out):
            raise BadValue("Value error, device model names must not be blank")
        return out
    inner.json = check.json  # type: ignore[attr-defined]
    return inner


def _lower_hex(check: Check) -> Check:
    def inner(value: Any) -> str:
        return check(value.lower() if isinstance(value, str) else value)
    inner.json = check.json  # type: ignore[attr-defined]
    return inner


class FirmwareManifest(Lean):
    """What a firmware image is and which devices it applies to (the signed part)."""

    frozen = True
    fields = (
        Field("firmware_id", text(pattern=FIRMWARE_ID_PATTERN), alias="firmwareId"),
        Field("version", text(min_length=1, max_length=64)),
        Field("device_models", _models_non_blank(list_of(text(), min_length=1, max_length=256)), alias="deviceModels"),
        Field("image_identifier", text(min_length=1, max_length=128), alias="imageIdentifier"),
        Field("size", integer(gt=0, le=MAX_IMAGE_BYTES)),
        Field("sha256", _lower_hex(text(pattern=r"^[0-9a-f]{64}$"))),
        Field("created", aware_datetime),
        Field("kind", constant(METER_FIRMWARE, CONCENTRATOR_SOFTWARE), default=METER_FIRMWARE),
    )

    def canonical_bytes(self) -> bytes:
        """The exact bytes that are signed: camelCase JSON, sorted keys, compact separators. A meter
        firmware's manifest leaves its kind out (manifests signed before kinds existed keep their signatures)."""
        data = self.dump()
        if self.kind == METER_FIRMWARE:
            del data["kind"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def applies_to(self, model: str | None) -> bool:
        return model is not None and model in self.device_models


class SignedManifest(Lean):
    """A manifest with the Ed25519 signature over its canonical bytes and the id of the key."""

    frozen = True
    fields = (
        Field("manifest", model(FirmwareManifest)),
        Field("key_id", text(min_length=1, max_length=64), alias="keyId"),
        Field("signature", text(min_length=1, max_length=256)),
    )

    def to_wire(self) -> bytes:
        return self.dump_json()

    @classmethod
    def from_wire(cls, data: bytes | str) -> SignedManifest:
        return cls.parse(data)


class ChunkRequest(Lean):
    """A request for ``count`` consecutive chunks of ``length`` bytes of an image from ``offset``."""

    forbid_extra = True
    frozen = True
    fields = (
        Field("firmware_id", text(pattern=FIRMWARE_ID_PATTERN), alias="firmwareId"),
        Field("offset", integer(ge=0, strict=True)),
        Field("length", integer(ge=1, le=MAX_CHUNK, strict=True)),
        Field("count", integer(ge=1, le=MAX_CHUNKS_PER_REQUEST, strict=True), default=1),
    )

    def to_wire(self) -> bytes:
        # ``count`` 1, the default, is left out: a single-chunk request reads as before ``count`` existed.
        document = self.dump()
        if self.count == 1:
            del document["count"]
        return json_bytes(document)

