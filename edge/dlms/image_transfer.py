"""DLMS image transfer, client side (COSEM interface class 18, IEC 62056-62 / Blue Book 4.4.6).

The steps the standard gives, over one :class:`~edge.dlms.client.DlmsAssociation`:

1. read ``image_block_size`` (attribute 2);
2. ``image_transfer_initiate(identifier, size)`` (method 1), unless the meter already has a
   transfer of this very image under way: ``image_transfer_status`` (attribute 6) says
   *initiated* and ``image_to_activate_info`` (attribute 7) names our identifier and size.
   Then the transfer resumes: only the blocks missing from ``image_transferred_blocks_status``
   (attribute 3) are sent, so a transfer cut by a dropped connection continues where it was;
3. ``image_block_transfer(number, data)`` (method 2) per block (built by
   :class:`~edge.dlms.block_sender.BlockSender`, not gurux, where it can), then attribute 3 read back to
   check that every block arrived (missing ones are sent again, a bounded number of times);
4. ``image_verify`` (method 3) and 5. ``image_activate`` (method 4). A meter that verifies or
   activates asynchronously answers *temporary-failure*; the client then polls attribute 6
   until it leaves *verification/activation initiated*.

Failures raise :class:`ImageTransferError` whose ``stage`` says which step failed
(``transfer``, ``verify`` or ``activate``); link failures stay :class:`DlmsCommunicationError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from edge.dlms.block_sender import BlockSender
from edge.dlms.client import DlmsAssociation
from edge.dlms.errors import DlmsProtocolError, DlmsResultError
from edge.dlms.sim_firmware import ImageTransferStatus

from gurux_dlms.enums.DataType import DataType  # noqa: I001  (after edge.dlms.client applied the fixes)
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.objects.GXDLMSImageTransfer import GXDLMSImageTransfer

logger = logging.getLogger(__name__)

IMAGE_TRANSFER_OBIS = "0.0.44.0.0.255"
TEMPORARY_FAILURE = 2
# Rounds of "read the block bitmap, send what is missing" before giving up.
MAX_REPAIR_ROUNDS = 3

Stage = Literal["transfer", "verify", "activate"]


class ImageTransferError(DlmsProtocolError):
    """An image transfer step the meter refused or reported failed; ``stage`` names the step."""

    def __init__(self, message: str, *, stage: Stage, meter_id: str | None = None) -> None:
        super().__init__(message, meter_id=meter_id)
        self.stage = stage


@dataclass
class TransferReport:
    """What one :meth:`ImageTransferClient.transfer` did."""

    block_size: int
    blocks_total: int
    blocks_sent: int
    resumed: bool
    seconds: float


class ImageTransferClient:
    """Runs the class-18 steps on one open association."""

    def __init__(self, *, link: DlmsAssociation, obis: str = IMAGE_TRANSFER_OBIS, poll_interval: float = 0.1,
                 status_timeout: float = 120.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._link = link
        self._obj = GXDLMSImageTransfer(obis)
        self._poll_interval = poll_interval
        self._status_timeout = status_timeout
        self._sleep = sleep

    @property
    def meter_id(self) -> str:
        return self._link.meter_id

    # --- attributes ---------------------------------------------------------------------------
    async def block_size(self) -> int:
        return int(await self._link.read(self._obj, 2))

    async def status(self) -> ImageTransferStatus:
        return ImageTransferStatus(int(await self._link.read(self._obj, 6)))

    async def missing_blocks(self, count: int) -> list[int]:
        """Block numbers below ``count`` the meter's attribute 3 does not mark as received."""
        raw = await self._link.read(self._obj, 3)
        bits = str(getattr(raw, "value", raw) or "")
        return [n for n in range(count) if n >= len(bits) or bits[n] != "1"]

    async def pending_image(self) -> tuple[bytes, int] | None:
        """(identifier, size) of the image the meter is receiving or holds, if any (attribute 7)."""
        await self._link.read(self._obj, 7)
        infos = list(self._obj.imageActivateInfo or [])
        if not infos:
            return None
        info = infos[0]
        identification = info.identification
        if isinstance(identification, str):
            identification = identification.encode()
        return bytes(identification or b""), int(info.size or 0)

    # --- the procedure ------------------------------------------------------------------------
    async def transfer(self, *, identifier: bytes, image: bytes) -> TransferReport:
        """Steps 1-3: get every block of ``image`` onto the meter, resuming a transfer under way."""
        started = time.monotonic()
        size = await self.block_size()
        if size <= 0:
            raise ImageTransferError(f"meter {self.meter_id}: image_block_size is {size}", stage="transfer",
                                     meter_id=self.meter_id)
        self._obj.imageBlockSize = size
        count = -(-len(image) // size)
        resumed = False
        todo = list(range(count))
        if await self.status() is ImageTransferStatus.INITIATED and \
                await self.pending_image() == (identifier, len(image)):
            todo = await self.missing_blocks(count)
            resumed = True
            logger.info("meter %s: resuming image transfer, %d of %d blocks missing", self.meter_id, len(todo), count)
        else:
            await self._method(1, self._initiate_data(identifier, len(image)), stage="transfer")
        sent = 0
        sender = BlockSender.for_link(self._link, obis=self._obj.logicalName, block_size=size)
        for _round in range(MAX_REPAIR_ROUNDS + 1):
            for number in todo:
                await self._block(sender, number, image[number * size:(number + 1) * size])
                sent += 1
            todo = await self.missing_blocks(count)
            if not todo:
                break
            logger.warning("meter %s: %d blocks missing after transfer; sending them again", self.meter_id, len(todo))
        else:
            raise ImageTransferError(f"meter {self.meter_id}: {len(todo)} blocks still missing after "
                                     f"{MAX_REPAIR_ROUNDS} repair rounds", stage="transfer", meter_id=self.meter_id)
        return TransferReport(block_size=size, blocks_total=count, blocks_sent=sent, resumed=resumed,
                              seconds=time.monotonic() - started)

    async def verify(self) -> None:
        """Step 4: the meter checks the image; raises ImageTransferError(stage="verify") if it fails."""
        await self._run_and_wait(3, stage="verify", busy=ImageTransferStatus.VERIFICATION_INITIATED,
                                 done=ImageTransferStatus.VERIFICATION_SUCCESSFUL)

    async def activate(self) -> None:
        """Step 5: the meter runs the image; raises ImageTransferError(stage="activate") if it fails."""
        await self._run_and_wait(4, stage="activate", busy=ImageTransferStatus.ACTIVATION_INITIATED,
                                 done=ImageTransferStatus.ACTIVATION_SUCCESSFUL)

    # --- internals ----------------------------------------------------------------------------
    async def _run_and_wait(self, method: int, *, stage: Stage, busy: ImageTransferStatus,
                            done: ImageTransferStatus) -> None:
        try:
            await self._link.call(self._link.client.method(self._obj, method, 0, DataType.INT8))
        except DlmsResultError as exc:
            if exc.result != TEMPORARY_FAILURE:
                status = await self.status()
                raise ImageTransferError(f"meter {self.meter_id}: image {stage} refused (result {exc.result}, "
                                         f"status {status.name})", stage=stage, meter_id=self.meter_id) from exc
        deadline = time.monotonic() + self._status_timeout
        status = await self.status()
        while status is busy:
            if time.monotonic() > deadline:
                raise ImageTransferError(f"meter {self.meter_id}: image {stage} still running after "
                                         f"{self._status_timeout:.0f}s", stage=stage, meter_id=self.meter_id)
            await self._sleep(self._poll_interval)
            status = await self.status()
        if status is not done:
            raise ImageTransferError(f"meter {self.meter_id}: image {stage} failed (status {status.name})",
                                     stage=stage, meter_id=self.meter_id)

    async def _block(self, sender: BlockSender | None, number: int, block: bytes) -> None:
        if sender is None:
            await self._method(2, self._block_data(number, block), stage="transfer")
            return
        try:
            await sender.send(number, block)
        except DlmsResultError as exc:
            raise ImageTransferError(f"meter {self.meter_id}: image block transfer refused (result {exc.result})",
                                     stage="transfer", meter_id=self.meter_id) from exc

    async def _method(self, index: int, data: GXByteBuffer, *, stage: Stage) -> None:
        try:
            await self._link.call(self._link.client.method(self._obj, index, data, DataType.ARRAY))
        except DlmsResultError as exc:
            what = "initiate" if index == 1 else "block transfer"
            raise ImageTransferError(f"meter {self.meter_id}: image {what} refused (result {exc.result})",
                                     stage=stage, meter_id=self.meter_id) from exc

    @staticmethod
    def _initiate_data(identifier: bytes, size: int) -> GXByteBuffer:
        data = GXByteBuffer()
        data.setUInt8(DataType.STRUCTURE)
        data.setUInt8(2)
        _GXCommon.setData(None, data, DataType.OCTET_STRING, identifier)
        _GXCommon.setData(None, data, DataType.UINT32, size)
        return data

    @staticmethod
    def _block_data(number: int, block: bytes) -> GXByteBuffer:
        data = GXByteBuffer()
        data.setUInt8(DataType.STRUCTURE)
        data.setUInt8(2)
        _GXCommon.setData(None, data, DataType.UINT32, number)
        _GXCommon.setData(None, data, DataType.OCTET_STRING, block)
        return data

