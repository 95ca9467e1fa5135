"""COSEM objects of the simulated meter, backed by a MeterModel instead of stored values.

Each class is a gurux interface class whose getValue/setValue/invoke read and change the
shared :class:`~edge.dlms.meter_model.MeterModel`, so every association sees the same meter.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gurux_dlms.enums.ClockStatus import ClockStatus
from gurux_dlms.enums.DataType import DataType
from gurux_dlms.enums.ErrorCode import ErrorCode
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDateTime import GXDateTime
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.objects.enums.ControlMode import ControlMode
from gurux_dlms.objects.enums.ControlState import ControlState
from gurux_dlms.objects.GXDLMSCaptureObject import GXDLMSCaptureObject
from gurux_dlms.objects.GXDLMSClock import GXDLMSClock
from gurux_dlms.objects.GXDLMSData import GXDLMSData
from gurux_dlms.objects.GXDLMSDisconnectControl import GXDLMSDisconnectControl
from gurux_dlms.objects.GXDLMSProfileGeneric import GXDLMSProfileGeneric
from gurux_dlms.objects.GXDLMSRegister import GXDLMSRegister
from gurux_dlms.objects.GXDLMSSapAssignment import GXDLMSSapAssignment

from edge.dlms.alarms import ALARM_REGISTER_OBIS, STANDARD_EVENT_CODE_OBIS, STANDARD_EVENT_LOG_OBIS
from edge.dlms.meter_model import DAILY_PERIOD, ENERGY_OBIS, PROFILE_PERIOD, TOTAL_ENERGY_OBIS, MeterModel

CLOCK_OBIS = "0.0.1.0.0.255"
LOAD_PROFILE_OBIS = "1.0.99.1.0.255"
LOAD_PROFILE_2_OBIS = "1.0.99.2.0.255"
POWER_FAILURE_LOG_OBIS = "1.0.99.97.0.255"
FRAUD_LOG_OBIS = "0.0.99.98.1.255"
DISCONNECT_LOG_OBIS = "0.0.99.98.2.255"
ALARM_REGISTER_2_OBIS = "0.0.97.98.1.255"
ALARM_FILTER_OBIS = "0.0.97.98.10.255"
SAP_ASSIGNMENT_OBIS = "0.0.41.0.0.255"
DISCONNECT_OBIS = "0.0.96.3.10.255"
DEVICE_NAME_OBIS = "0.0.42.0.0.255"

# DLMS unit enumeration values (IEC 62056-62 table): Wh, W, V.
UNIT_WH = 30
UNIT_W = 27
UNIT_V = 35


def to_gx_datetime(value: datetime, status: int = 0) -> GXDateTime:
    """A GXDateTime for an aware datetime, carrying a COSEM clock status byte."""
    gx = GXDateTime(value.astimezone(UTC))
    gx.status = ClockStatus(status) if status else ClockStatus.OK
    return gx


def from_gx_datetime(value: Any) -> datetime:
    """An aware UTC datetime from what gurux decodes a COSEM date-time to."""
    moment = value.value if isinstance(value, GXDateTime) else value
    if not isinstance(moment, datetime):
        raise ValueError(f"not a date-time: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class ModelRegister(GXDLMSRegister):
    """A register whose value attribute is read live from the model."""

    def __init__(self, model: MeterModel, obis: str, *, scaler: float, unit: int) -> None:
        super().__init__(obis)
        self._model = model
        self.scaler = scaler
        self.unit = unit
        self.setDataType(2, DataType.UINT32 if obis in (*ENERGY_OBIS, *TOTAL_ENERGY_OBIS) else DataType.INT32)

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 2:
            return self._model.register_value(self.logicalName)
        return super().getValue(settings, e)


class ModelClock(GXDLMSClock):
    """The meter clock: reads the drifting meter time and status, writes set the clock."""

    def __init__(self, model: MeterModel) -> None:
        super().__init__(CLOCK_OBIS)
        self._model = model

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 2:
            return to_gx_datetime(self._model.meter_now(), self._model.clock_status)
        if e.index == 4:
            return self._model.clock_status
        return super().getValue(settings, e)

    def setValue(self, settings: Any, e: Any) -> None:
        if e.index == 2:
            super().setValue(settings, e)
            self._model.set_meter_time(from_gx_datetime(self.time))
            return
        super().setValue(settings, e)


class ModelDisconnectControl(GXDLMSDisconnectControl):
    """Disconnect control: remote_disconnect (method 1) and remote_reconnect (method 2)."""

    def __init__(self, model: MeterModel) -> None:
        super().__init__(DISCONNECT_OBIS)
        self._model = model
        self.controlMode = ControlMode.MODE_1

    def getValue(self, settings: Any, e: Any) -> Any:
        self._model.settle_relay()
        if e.index == 2:
            return self._model.output_state
        if e.index == 3:
            return int(ControlState.CONNECTED if self._model.output_state else ControlState.DISCONNECTED)
        return super().getValue(settings, e)

    def invoke(self, settings: Any, e: Any) -> Any:
        if e.index == 1:
            self._model.disconnect()
        elif e.index == 2:
            self._model.reconnect()
        else:
            e.error = ErrorCode.READ_WRITE_DENIED
        return None


class ModelLoadProfile(GXDLMSProfileGeneric):
    """Load profile 1 (1.0.99.1.0.255, every 15 minutes) or 2 (1.0.99.2.0.255, daily): clock +
    four energy registers.

    The buffer (attribute 2) is encoded here rather than by gurux, whose range filter
    compares a datetime with 0 and whose column selection counts columns wrongly.
    """

    def __init__(self, model: MeterModel, *, clock: GXDLMSClock, registers: list[GXDLMSRegister],
                 obis: str = LOAD_PROFILE_OBIS) -> None:
        super().__init__(obis)
        self._model = model
        self._period = DAILY_PERIOD if obis == LOAD_PROFILE_2_OBIS else PROFILE_PERIOD
        self.capturePeriod = int(self._period.total_seconds())
        self.captureObjects.append((clock, GXDLMSCaptureObject(2, 0)))
        for register in registers:
            self.captureObjects.append((register, GXDLMSCaptureObject(2, 0)))
        self.profileEntries = model.history_days * int(DAILY_PERIOD / self._period)
        self.entriesInUse = 0

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 2:
            start, end = _range_of(settings, e)
            rows = self._model.profile_rows(start, end, period=self._period)
            if e.selector == 2 and e.parameters:
                first = max(int(e.parameters[0]), 1) - 1
                count = int(e.parameters[1]) or len(rows)
                rows = rows[first:first + count]
            e.byteArray = True
            return _encode_rows(settings, rows, self._model.clock_status)
        if e.index == 7:
            return len(self._model.profile_rows(period=self._period))
        return super().getValue(settings, e)


def _range_of(settings: Any, e: Any) -> tuple[datetime | None, datetime | None]:
    if e.selector != 1 or not e.parameters:
        return None, None
    return _decode_datetime(settings, e.parameters[1]), _decode_datetime(settings, e.parameters[2])


def _decode_datetime(settings: Any, raw: Any) -> datetime:
    if isinstance(raw, (bytes, bytearray)):
        raw = _GXCommon.changeType(settings, bytearray(raw), DataType.DATETIME)
    return from_gx_datetime(raw)


def _encode_rows(settings: Any, rows: list[Any], status: int) -> bytes:
    buffer = GXByteBuffer()
    buffer.setUInt8(DataType.ARRAY)
    _GXCommon.setObjectCount(len(rows), buffer)
    for row in rows:
        buffer.setUInt8(DataType.STRUCTURE)
        _GXCommon.setObjectCount(1 + len(row.energy_wh), buffer)
        _GXCommon.setData(settings, buffer, DataType.OCTET_STRING, to_gx_datetime(row.time, status))
        for value in row.energy_wh:
            _GXCommon.setData(settings, buffer, DataType.UINT32, value)
    return bytes(buffer.array())


class ModelAlarmRegister(GXDLMSData):
    """An alarm register (0.0.97.98.0.255, .1.255) or the alarm filter (.10.255): a uint32 bit field
    read live from the model's attribute of that name."""

    def __init__(self, model: MeterModel, obis: str = ALARM_REGISTER_OBIS, attribute: str = "alarm_bits") -> None:
        super().__init__(obis)
        self._model = model
        self._attribute = attribute
        self.setDataType(2, DataType.UINT32)

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 2:
            return getattr(self._model, self._attribute)
        return super().getValue(settings, e)


class ModelEventLog(GXDLMSProfileGeneric):
    """An event log of (clock, value) captures from the model: the standard event log
    0.0.99.98.0.255 by default; the fraud (.1.255) and disconnector control (.2.255) logs, and
    the power failure log 1.0.99.97.0.255 (clock, duration in s as a uint32).

    Encoded here for the same reasons as :class:`ModelLoadProfile`.
    """

    def __init__(self, model: MeterModel, *, clock: GXDLMSClock, event_code: GXDLMSData,
                 obis: str = STANDARD_EVENT_LOG_OBIS, entries: str = "events",
                 value_type: DataType = DataType.UINT8) -> None:
        super().__init__(obis)
        self._model = model
        self._entries = entries
        self._value_type = value_type
        self.captureObjects.append((clock, GXDLMSCaptureObject(2, 0)))
        self.captureObjects.append((event_code, GXDLMSCaptureObject(2, 0)))
        self.profileEntries = 100
        self.entriesInUse = 0

    def getValue(self, settings: Any, e: Any) -> Any:
        entries: list[tuple[datetime, int]] = getattr(self._model, self._entries)
        if e.index == 2:
            start, end = _range_of(settings, e)
            rows = [(at, value) for at, value in entries
                    if (start is None or at >= start) and (end is None or at <= end)]
            buffer = GXByteBuffer()
            buffer.setUInt8(DataType.ARRAY)
            _GXCommon.setObjectCount(len(rows), buffer)
            for at, value in rows:
                buffer.setUInt8(DataType.STRUCTURE)
                _GXCommon.setObjectCount(2, buffer)
                _GXCommon.setData(settings, buffer, DataType.OCTET_STRING, to_gx_datetime(at))
                _GXCommon.setData(settings, buffer, self._value_type, value)
            e.byteArray = True
            return bytes(buffer.array())
        if e.index == 7:
            return len(entries)
        return super().getValue(settings, e)


class ModelEventCode(GXDLMSData):
    """Standard event code object 0.0.96.11.0.255: the last logged event's code (0 if none)."""

    def __init__(self, model: MeterModel) -> None:
        super().__init__(STANDARD_EVENT_CODE_OBIS)
        self._model = model
        self.setDataType(2, DataType.UINT8)

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 2:
            return self._model.events[-1][1] if self._model.events else 0
        return super().getValue(settings, e)


class ModelValue(GXDLMSData):
    """A data object whose value attribute is read live from the model (a log's capture object)."""

    def __init__(self, obis: str, read: Callable[[], Any], data_type: DataType) -> None:
        super().__init__(obis)
        self._read = read
        self.setDataType(2, data_type)

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 2:
            return self._read()
        return super().getValue(settings, e)


def sap_assignment(server_address: int, device_name: str) -> GXDLMSSapAssignment:
    """The SAP assignment (0.0.41.0.0.255): which logical device answers at which server SAP."""
    sap = GXDLMSSapAssignment(SAP_ASSIGNMENT_OBIS)
    sap.sapAssignmentList.append((server_address, device_name))
    return sap


def device_name(serial: str) -> GXDLMSData:
    """The COSEM logical device name object (0.0.42.0.0.255), an octet string."""
    data = GXDLMSData(DEVICE_NAME_OBIS)
    data.value = serial.encode("ascii")
    data.setDataType(2, DataType.OCTET_STRING)
    return data
