"""The disconnector's weekly schedule as COSEM objects: two single action schedules (class 22).

DSMR's disconnect control scheduler (0.0.15.0.0.255) runs a script of the disconnect script
table (class 9, 0.0.10.0.106.255) at its execution times: script 1 is remote_disconnect, script 2
remote_reconnect. A tariff schedule needs both directions, so the meter has two schedules: the
one at 0.0.15.0.0.255 opens the relay (script 1), the one at 0.0.15.0.1.255 closes it (script 2).
Each holds its switching moments as execution_time (attribute 4, type 5: any number of times,
wildcards in the date), one (time, date) pair per moment: time hh:mm:00, date with year, month
and day not specified and the day of week given.

gurux decodes such a date to 1 January 2000 and drops its day of week, so attribute 4 is encoded
and decoded here, the same way by the concentrator (:class:`WeeklyActionSchedule`) and by the
simulator (:class:`ModelActionSchedule`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gurux_dlms.enums.DataType import DataType
from gurux_dlms.enums.ErrorCode import ErrorCode
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.objects.GXDLMSActionSchedule import GXDLMSActionSchedule
from gurux_dlms.objects.GXDLMSScriptTable import GXDLMSScriptTable

from edge.dlms.meter_model import MeterModel
from edge.switching import SwitchPoint

OPEN_SCHEDULE_OBIS = "0.0.15.0.0.255"
CLOSE_SCHEDULE_OBIS = "0.0.15.0.1.255"
DISCONNECT_SCRIPT_TABLE_OBIS = "0.0.10.0.106.255"
SCRIPT_DISCONNECT, SCRIPT_RECONNECT = 1, 2
# execution_time type 5: size n, time values may differ, wildcards in the date allowed.
TYPE_TIMES_WITH_WILDCARDS = 5
NOT_SPECIFIED = 0xFF

Moment = tuple[int, int]  # (weekday 1..7, minute of the day)


def encode_execution_times(moments: Iterable[Moment]) -> bytes:
    """Attribute 4 of class 22: array of structure {time octet-string(4), date octet-string(5)}."""
    ordered = sorted(set(moments))
    buffer = GXByteBuffer()
    buffer.setUInt8(DataType.ARRAY)
    _GXCommon.setObjectCount(len(ordered), buffer)
    for weekday, minute in ordered:
        buffer.setUInt8(DataType.STRUCTURE)
        buffer.setUInt8(2)
        _GXCommon.setData(None, buffer, DataType.OCTET_STRING, bytes([minute // 60, minute % 60, 0, 0]))
        _GXCommon.setData(None, buffer, DataType.OCTET_STRING,
                          bytes([0xFF, 0xFF, NOT_SPECIFIED, NOT_SPECIFIED, weekday]))
    return bytes(buffer.array())


def decode_execution_times(value: Any) -> list[Moment]:
    """The (weekday, minute) pairs of a decoded attribute 4 (a list of [time, date] octet strings)."""
    moments: list[Moment] = []
    for item in value or []:
        time, date = bytes(item[0]), bytes(item[1])
        if len(time) != 4 or len(date) != 5:
            raise ValueError(f"execution_time entry is not time(4)+date(5) octets: {time.hex()} {date.hex()}")
        hour, minute, weekday = time[0], time[1], date[4]
        if hour > 23 or minute > 59 or not 1 <= weekday <= 7:
            raise ValueError(f"execution_time entry out of range: {time.hex()} {date.hex()}")
        moments.append((weekday, hour * 60 + minute))
    return sorted(moments)


def split(points: Iterable[SwitchPoint]) -> tuple[list[Moment], list[Moment]]:
    """The moments the relay opens and the moments it closes."""
    points = list(points)
    return ([(p.weekday, p.minute) for p in points if not p.closed],
            [(p.weekday, p.minute) for p in points if p.closed])


class WeeklyActionSchedule(GXDLMSActionSchedule):
    """A single action schedule whose execution times are (weekday, minute) moments."""

    def __init__(self, obis: str, *, script: int = SCRIPT_DISCONNECT) -> None:
        super().__init__(obis)
        self.target = GXDLMSScriptTable(DISCONNECT_SCRIPT_TABLE_OBIS)
        self.executedScriptSelector = script
        self.type_ = TYPE_TIMES_WITH_WILDCARDS
        self.moments: list[Moment] = []

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802 - gurux's name
        if e.index == 4:
            e.byteArray = True
            return encode_execution_times(self.moments)
        return super().getValue(settings, e)

    def setValue(self, settings: Any, e: Any) -> None:  # noqa: N802 - gurux's name
        if e.index == 4:
            try:
                self.moments = decode_execution_times(e.value)
            except (ValueError, TypeError, IndexError):
                e.error = ErrorCode.OTHER_REASON
            return
        super().setValue(settings, e)


class ModelActionSchedule(WeeklyActionSchedule):
    """The simulated meter's schedule: what is written goes to the model, which switches on its own."""

    def __init__(self, model: MeterModel, obis: str, *, closes: bool) -> None:
        super().__init__(obis, script=SCRIPT_RECONNECT if closes else SCRIPT_DISCONNECT)
        self._model = model
        self._closes = closes

    def getValue(self, settings: Any, e: Any) -> Any:  # noqa: N802
        if e.index == 4:
            self.moments = sorted((p.weekday, p.minute) for p in self._model.relay_schedule.points
                                  if p.closed is self._closes)
        return super().getValue(settings, e)

    def setValue(self, settings: Any, e: Any) -> None:  # noqa: N802
        if e.index == 2:
            script = e.value[1] if e.value else None
            if script != (SCRIPT_RECONNECT if self._closes else SCRIPT_DISCONNECT):
                e.error = ErrorCode.READ_WRITE_DENIED  # each schedule runs its own script only
            return
        if e.index == 3:
            if e.value != TYPE_TIMES_WITH_WILDCARDS:
                e.error = ErrorCode.READ_WRITE_DENIED
            return
        super().setValue(settings, e)
        if e.index == 4 and not e.error:
            self._model.store_relay_moments(self.moments, closed=self._closes)
