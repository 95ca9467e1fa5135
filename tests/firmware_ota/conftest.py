"""Keys, images and signed manifests for the firmware tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from broker.schemas.firmware import FirmwareManifest, SignedManifest
from firmware_ota.signing import generate_key, key_id_of, sign


def make_manifest(image: bytes, *, firmware_id: str = "sim-meter-2.1.0", version: str = "2.1.0",
                  models: tuple[str, ...] = ("SIM-DLMS",)) -> FirmwareManifest:
    return FirmwareManifest(
        firmware_id=firmware_id,
        version=version,
        device_models=list(models),
        image_identifier=f"IMG-{version}",
        size=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


@pytest.fixture(scope="session")
def keypair() -> tuple[bytes, bytes]:
    return generate_key()


@pytest.fixture(scope="session")
def trusted(keypair: tuple[bytes, bytes]) -> dict[str, bytes]:
    return {key_id_of(keypair[1]): keypair[1]}


@pytest.fixture
def image() -> bytes:
    return bytes(range(256)) * 40 + b"tail"


@pytest.fixture
def signed(image: bytes, keypair: tuple[bytes, bytes]) -> SignedManifest:
    return sign(make_manifest(image), keypair[0])
