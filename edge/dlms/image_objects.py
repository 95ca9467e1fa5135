"""The simulated meter's firmware objects: Image Transfer (class 18) and the active firmware identifier.

gurux-dlms 1.0.203's GXDLMSImageTransfer works as a client-side description of the object
but its server side does not: ``invoke`` indexes a ``bytes`` to set a bit, stores blocks in
``imageData`` which is never created, never verifies nor activates, and attribute 7 encodes
the identifier as an octet string it may be given as ``str``. :class:`ModelImageTransfer`
keeps gurux's attribute layout and replaces the server side with the meter's own state
(:class:`edge.dlms.sim_firmware.SimFirmware`).
"""

from __future__ import annotations

import logging
from typing import Any

from gurux_dlms.enums.DataType import DataType
from gurux_dlms.enums.ErrorCode import ErrorCode
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.objects.GXDLMSData import GXDLMSData
from gurux_dlms.objects.GXDLMSImageTransfer import GXDLMSImageTransfer

from edge.dlms.sim_firmware import ActionOutcome, SimFirmware

logger = logging.getLogger(__name__)

IMAGE_TRANSFER_OBIS = "0.0.44.0.0.255"
# Active firmware identifier (IDIS / DSMR): what the meter runs now, an octet string.
FIRMWARE_VERSION_OBIS = "1.0.0.2.0.255"

_ERRORS = {
    ActionOutcome.HARDWARE_FAULT: ErrorCode.HARDWARE_FAULT,
    ActionOutcome.TEMPORARY_FAILURE: ErrorCode.TEMPORARY_FAILURE,
    ActionOutcome.READ_WRITE_DENIED: ErrorCode.READ_WRITE_DENIED,
    ActionOutcome.OTHER_REASON: ErrorCode.OTHER_REASON,
}


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"expected an octet string, got {type(value).__name__}")


def block_result(outcome: ActionOutcome) -> int:
    """The action-result a meter answers image_block_transfer with: 0 or the ErrorCode gurux sends."""
    return 0 if outcome is ActionOutcome.SUCCESS else int(_ERRORS[outcome])


class ModelImageTransfer(GXDLMSImageTransfer):
    """Image Transfer 0.0.44.0.0.255 over the meter's :class:`SimFirmware`."""

    def __init__(self, firmware: SimFirmware, *, meter_name: str = "sim-meter") -> None:
        super().__init__(IMAGE_TRANSFER_OBIS)
        self._firmware = firmware
        self._meter_name = meter_name

    @property
    def firmware(self) -> SimFirmware:
        return self._firmware

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802
        fw = self._firmware
        if e.index == 2:
            return fw.block_size
        if e.index == 3:
            return fw.transferred_bits()
        if e.index == 4:
            return fw.first_not_transferred()
        if e.index == 5:
            return True
        if e.index == 6:
            return int(fw.current_status())
        if e.index == 7:
            buffer = GXByteBuffer()
            buffer.setUInt8(DataType.ARRAY)
            if fw.size:
                _GXCommon.setObjectCount(1, buffer)
                buffer.setUInt8(DataType.STRUCTURE)
                buffer.setUInt8(3)
                _GXCommon.setData(settings, buffer, DataType.UINT32, fw.size)
                _GXCommon.setData(settings, buffer, DataType.OCTET_STRING, fw.identifier)
                _GXCommon.setData(settings, buffer, DataType.OCTET_STRING, b"")
            else:
                _GXCommon.setObjectCount(0, buffer)
            e.byteArray = True
            return bytes(buffer.array())
        return super().getValue(settings, e)

    def setValue(self, settings: Any, e: Any) -> None:  # noqa: N802
        e.error = ErrorCode.READ_WRITE_DENIED

    def invoke(self, settings: Any, e: Any) -> Any:
        fw = self._firmware
        try:
            params = e.parameters
            if e.index == 1:
                outcome = fw.initiate(_as_bytes(params[0]), int(params[1]))
            elif e.index == 2:
                outcome = fw.block(int(params[0]), _as_bytes(params[1]))
            elif e.index == 3:
                outcome = fw.verify()
            elif e.index == 4:
                outcome = fw.activate()
            else:
                outcome = ActionOutcome.READ_WRITE_DENIED
        except (TypeError, ValueError, IndexError) as exc:
            logger.info("meter %s: bad image transfer method %d parameters: %s", self._meter_name, e.index, exc)
            outcome = ActionOutcome.OTHER_REASON
        if outcome is not ActionOutcome.SUCCESS:
            e.error = _ERRORS[outcome]
        elif e.index == 4:
            logger.info("meter %s: firmware %s activated", self._meter_name, fw.version)
        return None


class ModelFirmwareVersion(GXDLMSData):
    """The active firmware identifier: the version of the image last activated."""

    def __init__(self, firmware: SimFirmware, obis: str = FIRMWARE_VERSION_OBIS) -> None:
        super().__init__(obis)
        self._firmware = firmware
        self.setDataType(2, DataType.OCTET_STRING)

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802
        if e.index == 2:
            return self._firmware.version.encode()
        return super().getValue(settings, e)
