"""The simulated meter's power-quality COSEM objects, built from its profile's ``powerQuality`` block.

Registers (class 3) per value, counters (class 1) per phase and event kind, the power-quality
profile and event log (class 7, encoded here as the load profile is, see ``cosem_objects``).
"""

from __future__ import annotations

from typing import Any

from gurux_dlms.enums.DataType import DataType
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.objects.GXDLMSCaptureObject import GXDLMSCaptureObject
from gurux_dlms.objects.GXDLMSClock import GXDLMSClock
from gurux_dlms.objects.GXDLMSData import GXDLMSData
from gurux_dlms.objects.GXDLMSProfileGeneric import GXDLMSProfileGeneric
from gurux_dlms.objects.GXDLMSRegister import GXDLMSRegister

from devices.profiles.power_quality import PowerQualitySpec, PqCounter, PqValue
from edge.dlms import pq_model
from edge.dlms.cosem_objects import _range_of, to_gx_datetime
from edge.dlms.meter_model import MeterModel


class PqRegister(GXDLMSRegister):
    def __init__(self, model: MeterModel, value: PqValue) -> None:
        super().__init__(value.obis)
        self._model, self._value = model, value
        self.scaler = 10 ** pq_model.SCALERS[value.quantity]
        self.unit = pq_model.UNIT_CODES[value.quantity]
        self.setDataType(2, DataType.INT32)

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802 - gurux's name
        if e.index == 2:
            return pq_model.register_value(self._model, self._value, self._model.true_now())
        return super().getValue(settings, e)


class PqCounterData(GXDLMSData):
    def __init__(self, model: MeterModel, counter: PqCounter) -> None:
        super().__init__(counter.obis)
        self._model, self._counter = model, counter
        self.setDataType(2, DataType.UINT32)

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802
        if e.index == 2:
            return pq_model.count(self._model, self._counter.kind, self._counter.phase, self._model.true_now())
        return super().getValue(settings, e)


class PqProfile(GXDLMSProfileGeneric):
    def __init__(self, model: MeterModel, spec: PowerQualitySpec, *, clock: GXDLMSClock,
                 registers: dict[str, GXDLMSRegister]) -> None:
        assert spec.profile is not None
        super().__init__(spec.profile.obis)
        self._model, self._spec = model, spec
        self.capturePeriod = spec.profile.period_minutes * 60
        self.captureObjects.append((clock, GXDLMSCaptureObject(2, 0)))
        for obis in spec.profile.columns:
            self.captureObjects.append((registers[obis], GXDLMSCaptureObject(2, 0)))

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802
        if e.index == 2:
            start, end = _range_of(settings, e)
            rows = pq_model.profile_rows(self._model, self._spec, start, end)
            buffer = GXByteBuffer()
            buffer.setUInt8(DataType.ARRAY)
            _GXCommon.setObjectCount(len(rows), buffer)
            for at, values in rows:
                buffer.setUInt8(DataType.STRUCTURE)
                _GXCommon.setObjectCount(1 + len(values), buffer)
                _GXCommon.setData(settings, buffer, DataType.OCTET_STRING, to_gx_datetime(at))
                for value in values:
                    _GXCommon.setData(settings, buffer, DataType.INT32, value)
            e.byteArray = True
            return bytes(buffer.array())
        if e.index == 7:
            return len(pq_model.profile_rows(self._model, self._spec, None, None))
        return super().getValue(settings, e)


class PqEventLog(GXDLMSProfileGeneric):
    def __init__(self, model: MeterModel, spec: PowerQualitySpec, *, clock: GXDLMSClock) -> None:
        assert spec.event_log is not None
        super().__init__(spec.event_log.obis)
        self._model, self._spec = model, spec
        code = GXDLMSData("0.0.96.11.4.255")
        self.captureObjects.append((clock, GXDLMSCaptureObject(2, 0)))
        self.captureObjects.append((code, GXDLMSCaptureObject(2, 0)))

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802
        if e.index == 2:
            start, end = _range_of(settings, e)
            rows = pq_model.event_rows(self._model, self._spec, self._model.true_now(), start, end)
            buffer = GXByteBuffer()
            buffer.setUInt8(DataType.ARRAY)
            _GXCommon.setObjectCount(len(rows), buffer)
            for at, code in rows:
                buffer.setUInt8(DataType.STRUCTURE)
                _GXCommon.setObjectCount(2, buffer)
                _GXCommon.setData(settings, buffer, DataType.OCTET_STRING, to_gx_datetime(at))
                _GXCommon.setData(settings, buffer, DataType.UINT8, code)
            e.byteArray = True
            return bytes(buffer.array())
        if e.index == 7:
            return len(pq_model.event_rows(self._model, self._spec, self._model.true_now()))
        return super().getValue(settings, e)


def power_quality_objects(model: MeterModel, spec: PowerQualitySpec, *, clock: GXDLMSClock,
                          served: set[str]) -> list[Any]:
    """Every power-quality object of ``spec`` not already among ``served`` (OBIS codes)."""
    registers: dict[str, GXDLMSRegister] = {v.obis: PqRegister(model, v) for v in spec.values}
    objects: list[Any] = [r for obis, r in registers.items() if obis not in served]
    objects += [PqCounterData(model, c) for c in spec.counters if c.obis not in served]
    if spec.profile is not None:
        objects.append(PqProfile(model, spec, clock=clock, registers=registers))
    if spec.event_log is not None:
        objects.append(PqEventLog(model, spec, clock=clock))
    return objects
