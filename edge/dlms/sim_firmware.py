"""The simulated meter's firmware: its image format and its image-transfer state machine.

Pure code (no sockets, no gurux). The COSEM side (interface class 18, Image Transfer) is
:mod:`edge.dlms.image_objects`; it calls this module so every association of one simulated
meter sees the same transfer, and a transfer cut by a dropped connection resumes.

**Simulated image format.** A real meter knows its new version from inside the image; the
simulated meter reads it from a small header::

    b"GWFW" | version length (1 byte) | version (UTF-8) | payload (any bytes)

:func:`build_sim_image` writes one, :func:`image_version` reads it back. Verification fails
for an image without a valid header (as a meter refuses an image that is not for it), or
when a test sets :attr:`SimFirmware.fail_verify`; activation fails when it sets
:attr:`SimFirmware.fail_activate`. On activation the meter's firmware version becomes the
image's version.

Verification and activation take ``verify_seconds`` / ``activate_seconds`` (default 0):
while they run the meter answers the action with temporary-failure and reports
verification/activation *initiated* in ``image_transfer_status``, which the client polls,
as IEC 62056-62 describes for meters that verify or activate asynchronously.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

SIM_IMAGE_MAGIC = b"GWFW"
MAX_VERSION_BYTES = 64


class ImageTransferStatus(IntEnum):
    """image_transfer_status (class 18, attribute 6)."""

    NOT_INITIATED = 0
    INITIATED = 1
    VERIFICATION_INITIATED = 2
    VERIFICATION_SUCCESSFUL = 3
    VERIFICATION_FAILED = 4
    ACTIVATION_INITIATED = 5
    ACTIVATION_SUCCESSFUL = 6
    ACTIVATION_FAILED = 7


class ActionOutcome(IntEnum):
    """What a class-18 method answers (DLMS action-result values used here)."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OTHER_REASON = 250


def build_sim_image(version: str, payload: bytes = b"") -> bytes:
    """A simulated firmware image that makes a simulated meter report ``version`` once activated."""
    raw = version.encode()
    if not raw or len(raw) > MAX_VERSION_BYTES:
        raise ValueError(f"version must be 1..{MAX_VERSION_BYTES} bytes of UTF-8")
    return SIM_IMAGE_MAGIC + bytes([len(raw)]) + raw + payload


def image_version(image: bytes) -> str | None:
    """The version a simulated image carries, or None if it has no valid header."""
    head = len(SIM_IMAGE_MAGIC)
    if len(image) <= head or image[:head] != SIM_IMAGE_MAGIC:
        return None
    length = image[head]
    raw = image[head + 1:head + 1 + length]
    if length == 0 or len(raw) != length:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


@dataclass
class SimFirmware:
    """One meter's running firmware and its image transfer (shared by all its associations)."""

    version: str = "1.0.0"
    block_size: int = 512
    verify_seconds: float = 0.0
    activate_seconds: float = 0.0
    fail_verify: bool = False
    fail_activate: bool = False
    clock: Callable[[], float] = time.monotonic
    status: ImageTransferStatus = ImageTransferStatus.NOT_INITIATED
    identifier: bytes = b""
    size: int = 0
    blocks: dict[int, bytes] = field(default_factory=dict)
    # Counters for tests and benches.
    blocks_received: int = 0
    activations: int = 0
    _busy_until: float = 0.0

    # --- attributes ---------------------------------------------------------------------------
    @property
    def block_count(self) -> int:
        return -(-self.size // self.block_size) if self.size else 0

    def transferred_bits(self) -> str:
        """image_transferred_blocks_status as a bit string, bit n = block n received."""
        return "".join("1" if n in self.blocks else "0" for n in range(self.block_count))

    def first_not_transferred(self) -> int:
        """image_first_not_transferred_block_number."""
        return next((n for n in range(self.block_count) if n not in self.blocks), self.block_count)

    def current_status(self) -> ImageTransferStatus:
        """Status now: a verification or activation in progress completes once its time is up."""
        if self.status in (ImageTransferStatus.VERIFICATION_INITIATED, ImageTransferStatus.ACTIVATION_INITIATED) \
                and self.clock() >= self._busy_until:
            if self.status is ImageTransferStatus.VERIFICATION_INITIATED:
                self.status = self._verify_result()
            else:
                self._finish_activation()
        return self.status

    # --- methods ------------------------------------------------------------------------------
    def initiate(self, identifier: bytes, size: int) -> ActionOutcome:
        """image_transfer_initiate: start a transfer, forgetting any blocks received before.

        A client resuming an interrupted transfer does not initiate again: it finds its image
        in image_to_activate_info with status INITIATED and sends only the missing blocks.
        """
        if size <= 0 or not identifier:
            return ActionOutcome.OTHER_REASON
        self.blocks = {}
        self.identifier, self.size = identifier, size
        self.status = ImageTransferStatus.INITIATED
        return ActionOutcome.SUCCESS

    def block(self, number: int, data: bytes) -> ActionOutcome:
        """image_block_transfer: store block ``number`` (every block full-size but the last)."""
        if self.status not in (ImageTransferStatus.INITIATED, ImageTransferStatus.VERIFICATION_FAILED):
            return ActionOutcome.READ_WRITE_DENIED
        if not 0 <= number < self.block_count:
            return ActionOutcome.OTHER_REASON
        expected = min(self.block_size, self.size - number * self.block_size)
        if len(data) != expected:
            return ActionOutcome.OTHER_REASON
        self.blocks[number] = bytes(data)
        self.blocks_received += 1
        self.status = ImageTransferStatus.INITIATED
        return ActionOutcome.SUCCESS

    def verify(self) -> ActionOutcome:
        """image_verify: every block present and the image readable by this meter."""
        status = self.current_status()
        if status is ImageTransferStatus.VERIFICATION_INITIATED:
            return ActionOutcome.TEMPORARY_FAILURE
        if status is ImageTransferStatus.VERIFICATION_SUCCESSFUL:
            return ActionOutcome.SUCCESS
        if status not in (ImageTransferStatus.INITIATED, ImageTransferStatus.VERIFICATION_FAILED):
            return ActionOutcome.READ_WRITE_DENIED
        if self.verify_seconds > 0:
            self.status = ImageTransferStatus.VERIFICATION_INITIATED
            self._busy_until = self.clock() + self.verify_seconds
            return ActionOutcome.TEMPORARY_FAILURE
        self.status = self._verify_result()
        return ActionOutcome.SUCCESS if self.status is ImageTransferStatus.VERIFICATION_SUCCESSFUL \
            else ActionOutcome.OTHER_REASON

    def activate(self) -> ActionOutcome:
        """image_activate: run the verified image; the meter's version becomes the image's."""
        status = self.current_status()
        if status is ImageTransferStatus.ACTIVATION_INITIATED:
            return ActionOutcome.TEMPORARY_FAILURE
        if status is ImageTransferStatus.ACTIVATION_SUCCESSFUL:
            return ActionOutcome.SUCCESS
        if status is ImageTransferStatus.INITIATED:
            # The standard lets activate verify first when the client did not.
            if self.verify() is not ActionOutcome.SUCCESS:
                return ActionOutcome.OTHER_REASON
            status = self.status
        if status is not ImageTransferStatus.VERIFICATION_SUCCESSFUL:
            return ActionOutcome.READ_WRITE_DENIED
        if self.activate_seconds > 0:
            self.status = ImageTransferStatus.ACTIVATION_INITIATED
            self._busy_until = self.clock() + self.activate_seconds
            return ActionOutcome.TEMPORARY_FAILURE
        self._finish_activation()
        return ActionOutcome.SUCCESS if self.status is ImageTransferStatus.ACTIVATION_SUCCESSFUL \
            else ActionOutcome.OTHER_REASON

    # --- internals ----------------------------------------------------------------------------
    def image(self) -> bytes:
        return b"".join(self.blocks[n] for n in range(self.block_count))

    def _verify_result(self) -> ImageTransferStatus:
        if self.fail_verify or len(self.blocks) != self.block_count or image_version(self.image()) is None:
            return ImageTransferStatus.VERIFICATION_FAILED
        return ImageTransferStatus.VERIFICATION_SUCCESSFUL

    def _finish_activation(self) -> None:
        version = image_version(self.image())
        if self.fail_activate or version is None:
            self.status = ImageTransferStatus.ACTIVATION_FAILED
            return
        self.version = version
        self.activations += 1
        self.status = ImageTransferStatus.ACTIVATION_SUCCESSFUL
