"""The filesystem firmware store: verification on add, atomic layout, ranged reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.schemas.firmware import SignedManifest
from firmware_ota.errors import FirmwareNotFound
from firmware_ota.signing import SignatureError, generate_key, key_id_of, sign
from firmware_ota.store import FirmwareExists, FirmwareStore, ImageRejected
from tests.firmware_ota.conftest import make_manifest


def test_add_get_read_list(tmp_path: Path, image: bytes, signed: SignedManifest, trusted) -> None:
    store = FirmwareStore(root=tmp_path / "fw")
    assert store.add(image=image, signed=signed, trusted=trusted) == signed
    assert store.get("sim-meter-2.1.0") == signed
    assert store.list() == [signed]
    assert store.read("sim-meter-2.1.0", 0, 10) == image[:10]
    assert store.read("sim-meter-2.1.0", len(image) - 3, 100) == image[-3:]
    assert (tmp_path / "fw" / "sim-meter-2.1.0" / "image.bin").read_bytes() == image
    assert sorted(p.name for p in (tmp_path / "fw").iterdir()) == ["sim-meter-2.1.0"]
    # A second store over the same root sees it (no in-memory state).
    assert FirmwareStore(root=tmp_path / "fw").get("sim-meter-2.1.0") == signed


def test_add_same_firmware_twice_is_idempotent(tmp_path: Path, image: bytes, signed, trusted) -> None:
    store = FirmwareStore(root=tmp_path)
    store.add(image=image, signed=signed, trusted=trusted)
    assert store.add(image=image, signed=signed, trusted=trusted) == signed


def test_same_id_different_image_is_refused(tmp_path: Path, image: bytes, signed, keypair, trusted) -> None:
    store = FirmwareStore(root=tmp_path)
    store.add(image=image, signed=signed, trusted=trusted)
    other = image + b"!"
    with pytest.raises(FirmwareExists, match="different image"):
        store.add(image=other, signed=sign(make_manifest(other), keypair[0]), trusted=trusted)
    assert store.read("sim-meter-2.1.0", 0, len(image)) == image


def test_same_id_different_manifest_is_refused(tmp_path: Path, image: bytes, signed, keypair, trusted) -> None:
    store = FirmwareStore(root=tmp_path)
    store.add(image=image, signed=signed, trusted=trusted)
    with pytest.raises(FirmwareExists, match="different manifest"):
        store.add(image=image, signed=sign(make_manifest(image, version="2.2.0"), keypair[0]), trusted=trusted)


def test_sha_mismatch_is_refused(tmp_path: Path, image: bytes, signed, trusted) -> None:
    store = FirmwareStore(root=tmp_path)
    corrupt = bytes([image[0] ^ 0xFF]) + image[1:]
    with pytest.raises(ImageRejected, match="sha256 mismatch"):
        store.add(image=corrupt, signed=signed, trusted=trusted)
    assert store.list() == []


def test_size_mismatch_is_refused(tmp_path: Path, image: bytes, signed, trusted) -> None:
    store = FirmwareStore(root=tmp_path)
    with pytest.raises(ImageRejected, match="size mismatch"):
        store.add(image=image[:-1], signed=signed, trusted=trusted)
    assert list(tmp_path.iterdir()) == []


def test_unknown_key_and_tamper_are_refused(tmp_path: Path, image: bytes, signed, trusted) -> None:
    store = FirmwareStore(root=tmp_path)
    private, public = generate_key()
    with pytest.raises(SignatureError, match="unknown signing key"):
        store.add(image=image, signed=sign(make_manifest(image), private), trusted=trusted)
    tampered = signed.model_copy(
        update={"manifest": signed.manifest.model_copy(update={"device_models": ["OTHER"]})})
    with pytest.raises(SignatureError, match="bad signature"):
        store.add(image=image, signed=tampered, trusted=trusted)
    assert store.list() == [] and key_id_of(public) not in trusted


def test_read_out_of_range_and_unknown(tmp_path: Path, image: bytes, signed, trusted) -> None:
    store = FirmwareStore(root=tmp_path)
    store.add(image=image, signed=signed, trusted=trusted)
    for offset, length in ((len(image), 1), (-1, 5), (0, 0)):
        with pytest.raises(ValueError, match="outside the image"):
            store.read("sim-meter-2.1.0", offset, length)
    with pytest.raises(FirmwareNotFound, match="not found: nope"):
        store.get("nope")
    with pytest.raises(FirmwareNotFound):
        store.get("../etc")
    with pytest.raises(FirmwareNotFound):
        store.read("nope", 0, 1)


def test_a_served_firmware_taken_away_is_not_found(tmp_path: Path, image: bytes, signed, trusted) -> None:
    # The manifest is parsed once per store; an image removed behind its back is still not served.
    store = FirmwareStore(root=tmp_path)
    store.add(image=image, signed=signed, trusted=trusted)
    assert store.read("sim-meter-2.1.0", 0, 4) == image[:4]
    (tmp_path / "sim-meter-2.1.0" / "image.bin").unlink()
    with pytest.raises(FirmwareNotFound):
        store.read("sim-meter-2.1.0", 0, 4)
    (tmp_path / "sim-meter-2.1.0" / "manifest.json").unlink()
    with pytest.raises(FirmwareNotFound):
        store.get("sim-meter-2.1.0")


def test_leftover_temporary_directory_is_invisible(tmp_path: Path, image: bytes, signed, trusted) -> None:
    # What a crash between writing and renaming leaves behind.
    (tmp_path / ".tmp-crashed").mkdir()
    (tmp_path / ".tmp-crashed" / "image.bin").write_bytes(b"half")
    store = FirmwareStore(root=tmp_path)
    assert store.list() == []
    store.add(image=image, signed=signed, trusted=trusted)
    assert [s.manifest.firmware_id for s in store.list()] == ["sim-meter-2.1.0"]
