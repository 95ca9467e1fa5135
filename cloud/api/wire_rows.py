"""OMDP wire output straight from stored rows: NDJSON lines, CSV rows, JSON page items.

The reference is the pydantic path: ``cloud.store.rows`` rebuilds a MeterReading per row and
``cloud.api.bulk`` renders it (``ndjson_lines``, ``csv_rows``). Building and dumping models was
most of the cost of a large answer, so a row of the plain, well-formed shape is rendered here
directly, byte for byte as the reference renders it (tests/cloud/api/test_wire_rows.py checks this with
hypothesis). Any other row (a value of an unexpected type, a bound the models enforce, a
non-canonical id) goes to the reference, which renders it or logs and skips it: the fast path
never decides alone that a row is malformed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from cloud.api.bulk import csv_rows
from cloud.store import schema
from cloud.store.line_protocol import from_ns
from cloud.store.rows import ROW_PROBLEMS, Layout, reading_or_none

# json.dumps of a str is exactly this (ensure_ascii), so the bytes match the reference's.
_json_str = encode_basestring_ascii
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
_NOT_IN_METER_ID = re.compile(r"[/+#\x00]").search  # MeterIndividual's pattern, inverted
_METER_CLASSES = frozenset({"ELECTRICITY", "GAS", "WATER", "HEAT"})
# Bounds the models enforce (broker.schemas.meter_reading); a row beyond them goes to the reference.
_MAX_METER_ID, _MAX_PROPERTY_ID, _MAX_UNIT, _MAX_TEXT, _MAX_FAULT, _MAX_VALUES = 128, 128, 32, 1024, 64, 512
_CACHE_LIMIT = 65_536
_CSV_SPECIAL = re.compile(r'[,"\r\n]').search  # what makes the csv module quote a field
_isfinite = math.isfinite


class _Slow(Exception):
    """This row is not of the plain shape: render it through the reference."""


class _Property(NamedTuple):
    pid: str
    number: int | None  # column positions, None where the series lacks the column
    text: int | None
    unit: int | None
    date: int | None
    storable: bool  # a propertyId the models accept
    json_tail: str  # ',"operationalPropertyDefinition":{...}}' closing the property value
    csv_pid: str


class _Plan:
    """Column positions of one result series, and the pieces of output that depend only on them."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.layout = Layout(columns)
        at = self.layout.index.get
        # No reading_id column: every row's id is derived from its meter and time.
        self.time, self.meter, self.reading_id = at("time"), at(schema.METER_TAG), at(schema.READING_ID)
        self.usable = None not in (self.time, self.meter)
        self.sequence, self.fault, self.historical = at(schema.SEQUENCE), at(schema.FAULT_CODE), at(schema.HISTORICAL)
        self.meter_class, self.key = at(schema.METER_CLASS), at(schema.READING_KEY)
        self.clock = at(schema.CLOCK_FREE_RUNNING)  # rare (readings of an offline boot): the reference renders them
        self.properties = [
            _Property(pid, cols.get(""), cols.get(schema.TEXT_SUFFIX), cols.get(schema.UNIT_SUFFIX),
                      cols.get(schema.DATE_SUFFIX), 1 <= len(pid) <= _MAX_PROPERTY_ID,
                      f',"operationalPropertyDefinition":{{"propertyId":{_json_str(pid)}}}}}', _csv_field(pid))
            for pid, cols in self.layout.properties.items()
        ]


def _csv_field(text: str) -> str:
    """A field as the csv module's default (excel) writer writes it."""
    return '"' + text.replace('"', '""') + '"' if _CSV_SPECIAL(text) else text


# A parsed row, as plain tuples (cheaper than named ones at this rate):
#   (reading id, time, sequence, fault, meter, meter_class, historical, values)
#   value: (property, unit, number, text, date); number is repr() of the float, as json.dumps
#   and the CSV writer give it; time and date are (JSON string literal, isoformat);
#   meter is (id, JSON string literal, CSV field).
_Row = tuple[str, tuple[str, str], int | None, str | None, tuple[str, str, str], str | None, bool,
             list[tuple[_Property, str | None, str | None, str | None, tuple[str, str]]]]


class WireRenderer:
    """Renders the rows of one answer; keeps small caches (times, meter ids, units) across chunks."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._times: dict[int, tuple[str, str]] = {}
        self._meters: dict[str, tuple[str, str, str]] = {}
        self._units: dict[str, tuple[str, str]] = {}

    # --- public --------------------------------------------------------------------------------

    def ndjson(self, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> str:
        """One OMDP MeterReading JSON document per line (as ``bulk.ndjson_lines``)."""
        return "".join(item + "\n" for item in self.json_items(columns, values))

    def json_items(self, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> list[str]:
        """Each row's MeterReading as compact JSON text (malformed rows logged and left out)."""
        plan = self._plan(columns)
        out: list[str] = []
        for row in values:
            try:
                out.append(self._json(self._parse(plan, row)))
            except (_Slow, *ROW_PROBLEMS):
                reading = reading_or_none(plan.layout, row)
                if reading is not None:
                    out.append(json.dumps(reading.to_wire(), separators=(",", ":")))
        return out

    def page(self, rows: Iterable[tuple[Sequence[str], Sequence[Sequence[Any]]]], *, page_number: int,
             page_size: int, total_rows: int) -> str:
        """The JSON body of a ``MeterReadingsPage`` holding these rows' readings."""
        items = ",".join(item for columns, values in rows for item in self.json_items(columns, values))
        return (f'{{"meterReadings":[{items}],"pageNumber":{int(page_number)},"pageSize":{int(page_size)},'
                f'"totalRows":{int(total_rows)}}}')

    def csv(self, columns: Sequence[str], values: Sequence[Sequence[Any]]) -> str:
        """One CSV row per property value (as ``bulk.csv_rows``)."""
        plan = self._plan(columns)
        lines: list[str] = []
        for row in values:
            try:
                lines.append(self._csv(self._parse(plan, row)))
            except (_Slow, *ROW_PROBLEMS):
                reading = reading_or_none(plan.layout, row)
                if reading is not None:
                    lines.append(csv_rows([reading]))
        return "".join(lines)

    # --- parsing a row -------------------------------------------------------------------------

    def _plan(self, columns: Sequence[str]) -> _Plan:
        key = tuple(columns)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(columns)
        return plan

    def _time(self, stamp: Any) -> tuple[str, str]:
        if type(stamp) is not int:
            raise _Slow
        known = self._times.get(stamp)
        if known is None:
            if len(self._times) >= _CACHE_LIMIT:
                self._times.clear()
            iso = from_ns(stamp).isoformat()
            # pydantic writes a UTC datetime as isoformat() with "Z" for "+00:00".
            known = self._times[stamp] = ('"' + iso[:-6] + 'Z"', iso)
        return known

    def _meter(self, meter: Any) -> tuple[str, str, str]:
        if type(meter) is not str:
            raise _Slow
        known = self._meters.get(meter)
        if known is None:
            if not 1 <= len(meter) <= _MAX_METER_ID or _NOT_IN_METER_ID(meter):
                raise _Slow
            if len(self._meters) >= _CACHE_LIMIT:
                self._meters.clear()
            known = self._meters[meter] = (meter, _json_str(meter), _csv_field(meter))
        return known

    def _parse(self, plan: _Plan, row: Sequence[Any]) -> _Row:
        if not plan.usable or (plan.clock is not None and row[plan.clock] is not None):
            raise _Slow
        stamp = row[plan.time]
        when = self._time(stamp)
        meter = self._meter(row[plan.meter])
        reading_id = None if plan.reading_id is None else row[plan.reading_id]
        if reading_id is None:
            reading_id = schema.derived_id(meter[0], stamp)
        elif type(reading_id) is not str or not _CANONICAL_UUID(reading_id):
            raise _Slow
        sequence = None if plan.sequence is None else row[plan.sequence]
        if sequence is not None and type(sequence) is not int:
            raise _Slow
        fault = None if plan.fault is None else row[plan.fault]
        if fault is not None and (type(fault) is not str or len(fault) > _MAX_FAULT):
            raise _Slow
        key = None if plan.key is None else row[plan.key]
        lean = key is not None  # units implied where the point names none
        if lean:
            if type(key) is not int:
                raise _Slow
            meter_class = schema.class_of_key(key)
        else:
            meter_class = None if plan.meter_class is None else row[plan.meter_class]
        if meter_class is not None and (type(meter_class) is not str or meter_class not in _METER_CLASSES):
            raise _Slow
        historical = False if plan.historical is None else bool(row[plan.historical])
        values = []
        for prop in plan.properties:
            _, at_number, at_text, at_unit, at_date, storable, _, _ = prop
            number = None if at_number is None else row[at_number]
            text = None if at_text is None else row[at_text]
            if number is None and text is None:
                continue
            if not storable:
                raise _Slow
            unit = None if at_unit is None else row[at_unit]
            if unit is not None and type(unit) is not str:
                raise _Slow
            unit = schema.stored_unit(prop.pid, unit, lean=lean)
            if unit is not None and len(unit) > _MAX_UNIT:
                raise _Slow
            date = None if at_date is None else row[at_date]
            moment = when if date is None else self._time(date)
            if number is not None:
                if type(number) is not float:
                    if type(number) is not int:
                        raise _Slow
                    number = float(number)  # InfluxDB writes a float 5.0 as 5 in JSON
                if not _isfinite(number):
                    raise _Slow
                values.append((prop, unit, repr(number), None, moment))
            else:
                if type(text) is not str or len(text) > _MAX_TEXT:
                    raise _Slow
                values.append((prop, unit, None, text, moment))
        if not values or len(values) > _MAX_VALUES:
            raise _Slow
        return reading_id, when, sequence, fault, meter, meter_class, historical, values

    # --- rendering a parsed row ----------------------------------------------------------------

    def _unit(self, unit: str) -> tuple[str, str]:
        known = self._units.get(unit)
        if known is None:
            if len(self._units) >= _CACHE_LIMIT:
                self._units.clear()
            known = self._units[unit] = ('{"unit":' + _json_str(unit) + ',"date":', _csv_field(unit))
        return known

    def _json(self, row: _Row) -> str:
        """Key order and omissions as ``MeterReading.to_wire()`` (by alias, None left out)."""
        reading_id, when, sequence, fault, meter, meter_class, historical, values = row
        head = f'{{"meterReadingIdentifier":"{reading_id}","readingTime":{when[0]}'
        if sequence is not None:
            head += f',"sequenceNumber":{sequence}'
        if fault is not None:
            head += ',"faultCode":' + _json_str(fault)
        items = []
        for prop, unit, number, text, moment in values:
            start = '{"date":' if unit is None else self._unit(unit)[0]
            value = ',"numericalValue":' + number if number is not None else ',"textValue":' + _json_str(text)
            items.append(start + moment[0] + value + prop.json_tail)
        kind = ("" if meter_class is None else
                f',"physicalMeterType":{{"physicalElementIsVirtual":false,"physicalMeterClass":"{meter_class}"}}')
        return (f'{head},"propertyValues":[{",".join(items)}],"meterIndividual":{{"meterIndividualId":'
                f'{meter[1]}{kind}}},"historical":{"true" if historical else "false"}}}')

    def _csv(self, row: _Row) -> str:
        """The reading's CSV lines, as the csv module's excel dialect writes them."""
        reading_id, when, _, fault, meter, _, historical, values = row
        head = (f'{reading_id},{meter[2]},{when[1]},{"" if not fault else _csv_field(fault)},'
                f'{"true" if historical else "false"},')
        return "".join(
            f'{head}{prop.csv_pid},{number or ""},{"" if not text else _csv_field(text)},'
            f'{"" if unit is None else self._unit(unit)[1]},{moment[1]}\r\n'
            for prop, unit, number, text, moment in values)
