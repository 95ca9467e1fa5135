"""The ingest fast path: line protocol straight from an MQTT payload in the usual shape.

Validating every reading into pydantic models and encoding the models again cost ingest
about three quarters of its CPU. Nearly every payload a concentrator sends has one shape:
canonical UUIDs, RFC 3339 times with an offset, plain numbers and strings, no unknown keys.
For that shape this module checks the same rules as ``broker.schemas.MeterReading`` and
``cloud.store.line_protocol.check_reading`` while walking the parsed JSON once, and writes
the line ``encode_reading`` would write, character for character.

It is conservative, never lenient: anything it is not sure about (an unusual but maybe
valid spelling, or an error) makes it answer None, and the caller runs the full pydantic
validator, which either accepts the payload or names exactly what is wrong. Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from collections.abc import Callable
from typing import Any

import pydantic_core

from cloud.store import schema
from cloud.store.line_protocol import escape_key, escape_measurement, quote_string

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_METER_ID_FORBIDDEN = re.compile(r"[/+#\x00]")
_MICRO = timedelta(microseconds=1)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_CLASSES = frozenset({"ELECTRICITY", "GAS", "WATER", "HEAT"})
_FLOAT_EXACT = 2 ** 53

_READING_KEYS = frozenset({"meterReadingIdentifier", "readingTime", "sequenceNumber", "faultCode",
                           "propertyValues", "meterIndividual", "historical"})
_VALUE_KEYS = frozenset({"unit", "date", "numericalValue", "textValue", "operationalPropertyDefinition"})
_PROPERTY_KEYS = frozenset({"propertyId", "propertyDescription", "propertyName", "allowedUnits"})
_METER_KEYS = frozenset({"meterIndividualId", "householdId", "physicalMeterType", "physicalMeter"})
_TYPE_KEYS = frozenset({"physicalElementId", "physicalElementName", "physicalElementVersionId",
                        "physicalElementIsVirtual", "physicalMeterClass"})

_MEASUREMENT = escape_measurement(schema.MEASUREMENT)
_TEXT_SUFFIX = escape_key(schema.TEXT_SUFFIX)
_HISTORICAL_TRUE = f"{schema.HISTORICAL}=true"
_HISTORICAL_FALSE = f"{schema.HISTORICAL}=false"


# A deployment's per-value rule (the catalogue's, say): (property id, unit, is text, meter
# class) -> acceptable. Called for every value, so a caller memoises it (see the consumer).
ValueCheck = Callable[[str, str | None, bool, str | None], bool]


class _Unsure(Exception):
    """The payload is not in the fast path's shape; the full validator decides."""


# What a (property id, unit) pair writes around its value, validated once: property ids and
# units repeat across every reading of a fleet. Bounded, so random ids cannot grow it forever.
_SPECS: dict[tuple[str, str | None], tuple[str, str, str]] = {}
_CACHE_LIMIT = 4096


def _spec(pid: Any, unit: Any) -> tuple[str, str, str]:
    """(numeric prefix, text prefix, unit suffix) for a property id and unit, or _Unsure."""
    if type(pid) is not str or not 1 <= len(pid) <= 128 or schema.property_id_problem(pid):
        raise _Unsure
    key = escape_key(pid)
    if unit is None:
        suffix = ""
    elif type(unit) is str and 1 <= len(unit) <= 32:
        suffix = f",{key}{schema.UNIT_SUFFIX}={quote_string(unit)}"
    else:
        raise _Unsure
    spec = (f"{key}=", f"{key}{_TEXT_SUFFIX}=", suffix)
    if len(_SPECS) >= _CACHE_LIMIT:
        _SPECS.clear()
    _SPECS[(pid, unit)] = spec
    return spec


def _ns(text: Any, stamps: dict[str, int]) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with offset (cached per payload)."""
    if type(text) is not str:
        raise _Unsure
    stamp = stamps.get(text)
    if stamp is not None:
        return stamp
    if not _TIME.fullmatch(text):
        raise _Unsure
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _Unsure from exc
    utc = moment.utcoffset()
    if utc is None:
        raise _Unsure
    try:
        # Same integer arithmetic as line_protocol.to_ns, on naive UTC (cheaper than aware).
        stamp = ((moment.replace(tzinfo=None) - utc - _NAIVE_EPOCH) // _MICRO) * 1000
    except OverflowError as exc:
        raise _Unsure from exc
    stamps[text] = stamp
    return stamp


def _optional_str(value: Any, limit: int | None = None) -> str | None:
    if value is None:
        return None
    if type(value) is not str or (limit is not None and len(value) > limit):
        raise _Unsure
    return value


def _meter_class(meter: Any) -> str | None:
    if type(meter) is not dict or not meter.keys() <= _METER_KEYS:
        raise _Unsure
    _optional_str(meter.get("householdId"))
    # The schema reads physicalMeterType first and physicalMeter only when the first is absent.
    kind = meter["physicalMeterType"] if "physicalMeterType" in meter else meter.get("physicalMeter")
    if kind is None:
        return None
    if type(kind) is not dict or not kind.keys() <= _TYPE_KEYS:
        raise _Unsure
    element = kind.get("physicalElementId")
    if element is not None and (type(element) is not str or not _UUID.fullmatch(element)):
        raise _Unsure
    _optional_str(kind.get("physicalElementName"))
    _optional_str(kind.get("physicalElementVersionId"))
    if type(kind.get("physicalElementIsVirtual", False)) is not bool:
        raise _Unsure
    meter_class = kind.get("physicalMeterClass")
    if meter_class is not None and (type(meter_class) is not str or meter_class not in _CLASSES):
        raise _Unsure
    return meter_class


def _check_ref(ref: dict) -> None:
    """The optional parts of an operationalPropertyDefinition (rarely sent: usually just the id)."""
    if not ref.keys() <= _PROPERTY_KEYS:
        raise _Unsure
    _optional_str(ref["propertyDescription"] if "propertyDescription" in ref else ref.get("propertyName"))
    units = ref.get("allowedUnits")
    if units is not None and (type(units) is not list or any(type(u) is not str for u in units)):
        raise _Unsure


def _value_fields(values: Any, reading_time: str, stamp: int, stamps: dict[str, int], out: list[str],
                  value_check: ValueCheck | None, meter_class: str | None) -> None:
    """Append the fields of a reading's property values to ``out`` (one loop: the hot spot)."""
    if type(values) is not list or not 1 <= len(values) <= 512:
        raise _Unsure
    seen: set[str] = set()
    add = seen.add
    specs = _SPECS
    for value in values:
        if type(value) is not dict or not value.keys() <= _VALUE_KEYS:
            raise _Unsure
        ref = value.get("operationalPropertyDefinition")
        if type(ref) is not dict:
            raise _Unsure
        if len(ref) != 1:
            _check_ref(ref)
        pid = ref.get("propertyId")
        unit = value.get("unit")
        spec = specs.get((pid, unit)) or _spec(pid, unit)
        add(pid)
        number = value.get("numericalValue")
        if number is not None:
            if value.get("textValue") is not None:
                raise _Unsure
            kind = type(number)
            if kind is int and -_FLOAT_EXACT <= number <= _FLOAT_EXACT:
                number = float(number)
            # x - x is 0.0 for every finite float and NaN for inf and NaN.
            elif kind is not float or number - number != 0.0:
                raise _Unsure
            out.append(f"{spec[0]}{number!r}{spec[2]}")
        else:
            text = value.get("textValue")
            if type(text) is not str or len(text) > 1024:
                raise _Unsure
            out.append(f"{spec[1]}{quote_string(text)}{spec[2]}")
        if value_check is not None and not value_check(pid, unit, number is None, meter_class):
            raise _Unsure
        date = value.get("date")
        if date != reading_time:
            value_stamp = _ns(date, stamps)
            if value_stamp != stamp:
                out.append(f"{escape_key(pid)}{schema.DATE_SUFFIX}={value_stamp}i")
    if len(seen) != len(values):
        raise _Unsure  # a property given twice in one reading


def _line(reading: Any, *, meter: str, tail: str, stamps: dict[str, int], meters: dict[str, Any],
          value_check: ValueCheck | None) -> str:
    """The fields and timestamp of one reading's line (after measurement and tag)."""
    if type(reading) is not dict or not reading.keys() <= _READING_KEYS:
        raise _Unsure
    reading_id = reading.get("meterReadingIdentifier")
    if type(reading_id) is not str or not _UUID.fullmatch(reading_id):
        raise _Unsure
    reading_time = reading.get("readingTime")
    stamp = _ns(reading_time, stamps)
    # Every reading of a message repeats the same meterIndividual: check it once.
    meter_doc = reading.get("meterIndividual")
    if meter_doc != meters.get("doc"):
        meters["class"] = _meter_class(meter_doc)
        if meter_doc.get("meterIndividualId") != meter:
            raise _Unsure
        meters["doc"] = meter_doc
    meter_class = meters["class"]
    historical = reading.get("historical", False)
    if type(historical) is not bool:
        raise _Unsure
    fields = [f'{schema.READING_ID}="{reading_id}"', _HISTORICAL_TRUE if historical else _HISTORICAL_FALSE]
    fault = _optional_str(reading.get("faultCode"), 64)
    if fault is not None:
        fields.append(f"{schema.FAULT_CODE}={quote_string(fault)}")
    sequence = reading.get("sequenceNumber")
    if sequence is not None:
        if type(sequence) is not int:
            raise _Unsure
        fields.append(f"{schema.SEQUENCE}={sequence}i")
    fields.append(tail)
    if meter_class is not None:
        fields.append(f'{schema.METER_CLASS}="{meter_class}"')
    _value_fields(reading.get("propertyValues"), reading_time, stamp, stamps, fields, value_check, meter_class)
    return f" {','.join(fields)} {stamp}"


def encode_payload(payload: bytes | str, *, meter: str, concentrator_id: str,
                   value_check: ValueCheck | None = None) -> list[str] | None:
    """The line-protocol lines for a payload's readings (one reading or a ``meterReadings``
    batch) published under ``meter`` by ``concentrator_id``; None when the full validator
    must decide (the payload is unusual or wrong, or ``value_check`` refused a value)."""
    if not 1 <= len(meter) <= 128 or _METER_ID_FORBIDDEN.search(meter) or schema.identifier_problem(
            meter, what="meterIndividualId"):
        return None
    try:
        document = pydantic_core.from_json(payload)
    except ValueError:
        return None
    if type(document) is not dict:
        return None
    if "meterReadings" in document:
        readings = document["meterReadings"]
        if len(document) != 1 or type(readings) is not list or not 1 <= len(readings) <= 10_000:
            return None
    else:
        readings = [document]
    head = f"{_MEASUREMENT},{schema.METER_TAG}={escape_key(meter)}"
    tail = f"{schema.CONCENTRATOR}={quote_string(concentrator_id)}"
    stamps: dict[str, int] = {}
    meters: dict[str, Any] = {}
    try:
        return [head + _line(r, meter=meter, tail=tail, stamps=stamps, meters=meters, value_check=value_check)
                for r in readings]
    except (_Unsure, TypeError):
        # TypeError: an unhashable property id or unit (a list, say) used as a cache key.
        return None
