"""The firmware repository on the filesystem: verified images and their signed manifests.

Layout: `<root>/<firmware_id>/image.bin` and `<root>/<firmware_id>/manifest.json`. A firmware
directory appears only complete: it is written under a temporary name and renamed into place,
so a crash mid-write leaves nothing a reader can see. Image bytes never go into the database.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from broker.errors import Conflict, Invalid
from broker.schemas.firmware import FIRMWARE_ID_PATTERN, SignedManifest
from firmware_ota.errors import FirmwareNotFound
from firmware_ota.signing import verify

log = logging.getLogger(__name__)

IMAGE_FILE = "image.bin"
MANIFEST_FILE = "manifest.json"
_TMP_PREFIX = ".tmp-"


class ImageRejected(Invalid):
    """An image that is not the one its manifest describes (size or sha256)."""


class FirmwareExists(Conflict):
    """The firmware id is stored already, with another image or manifest."""


class FirmwareStore:
    """Adds, lists and serves firmware images whose manifests a trusted key signed."""

    def __init__(self, *, root: Path) -> None:
        self._root = root
        # A stored firmware never changes (add refuses another image or manifest under its id), so
        # its manifest is parsed once: the chunk server asks for it with every chunk it serves.
        self._manifests: dict[str, SignedManifest] = {}
        root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        return self._root

    def add(self, *, image: bytes, signed: SignedManifest, trusted: Mapping[str, bytes]) -> SignedManifest:
        """Verify and store; the stored manifest. SignatureError, ImageRejected or FirmwareExists say
        why not."""
        manifest = verify(signed, trusted)
        if len(image) != manifest.size:
            raise ImageRejected(f"size mismatch: manifest says {manifest.size} bytes, image has {len(image)}")
        digest = hashlib.sha256(image).hexdigest()
        if digest != manifest.sha256:
            raise ImageRejected(f"sha256 mismatch: manifest says {manifest.sha256}, image is {digest}")
        existing = self._existing(manifest.firmware_id)
        if existing is not None:
            return self._same_or_refuse(existing, signed)
        target = self._dir(manifest.firmware_id)
        tmp = self._root / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            _write_synced(tmp / IMAGE_FILE, image)
            _write_synced(tmp / MANIFEST_FILE, signed.to_wire())
            try:
                os.rename(tmp, target)
            except OSError:
                # Another writer got there first: theirs stands if it is the same firmware.
                existing = self._existing(manifest.firmware_id)
                if existing is None:
                    raise
                return self._same_or_refuse(existing, signed)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(self._root)
        log.info("firmware %s (%s, %d bytes) stored", manifest.firmware_id, manifest.version, manifest.size)
        return signed

    def get(self, firmware_id: str) -> SignedManifest:
        """The signed manifest of a stored firmware; FirmwareNotFound if there is none."""
        known = self._manifests.get(firmware_id)
        if known is not None:
            return known
        existing = self._existing(firmware_id)
        if existing is None:
            raise FirmwareNotFound(firmware_id)
        self._manifests[firmware_id] = existing
        return existing

    def read(self, firmware_id: str, offset: int, length: int) -> bytes:
        """`length` bytes of the image from `offset` (fewer at the end); ValueError if out of range."""
        manifest = self.get(firmware_id).manifest
        if offset < 0 or length <= 0 or offset >= manifest.size:
            raise ValueError(
                f"range offset={offset} length={length} is outside the image of {manifest.size} bytes"
            )
        try:
            with open(self._dir(firmware_id) / IMAGE_FILE, "rb") as handle:
                handle.seek(offset)
                return handle.read(min(length, manifest.size - offset))
        except FileNotFoundError:
            # Taken away behind the store's back: not served, and not remembered either.
            self._manifests.pop(firmware_id, None)
            raise FirmwareNotFound(firmware_id) from None

    def image_path(self, firmware_id: str) -> Path:
        self.get(firmware_id)
        return self._dir(firmware_id) / IMAGE_FILE

    def list(self) -> list[SignedManifest]:
        """Every stored firmware, ordered by firmware id."""
        found: list[SignedManifest] = []
        for child in sorted(self._root.iterdir()):
            if child.name.startswith(_TMP_PREFIX) or not child.is_dir():
                continue
            existing = self._existing(child.name)
            if existing is not None:
                found.append(existing)
        return found

    def _dir(self, firmware_id: str) -> Path:
        if not re.match(FIRMWARE_ID_PATTERN, firmware_id):
            raise FirmwareNotFound(firmware_id)
        return self._root / firmware_id

    def _existing(self, firmware_id: str) -> SignedManifest | None:
        try:
            path = self._dir(firmware_id) / MANIFEST_FILE
        except FirmwareNotFound:
            return None
        try:
            return SignedManifest.from_wire(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError:
            log.warning("firmware %s: unreadable manifest at %s, ignored", firmware_id, path)
            return None

    @staticmethod
    def _same_or_refuse(existing: SignedManifest, new: SignedManifest) -> SignedManifest:
        old, fresh = existing.manifest, new.manifest
        if old.sha256 != fresh.sha256:
            raise FirmwareExists(
                f"firmware {fresh.firmware_id!r} already exists with a different image "
                f"(sha256 {old.sha256}); use a new firmware id"
            )
        if old.canonical_bytes() != fresh.canonical_bytes():
            raise FirmwareExists(f"firmware {fresh.firmware_id!r} already exists with a different manifest")
        return existing


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
