"""The ingest fast path: line protocol straight from an MQTT payload in the usual shape.

Validating every reading into pydantic models and encoding the models again cost ingest
about three quarters of its CPU. Nearly every payload a concentrator sends has one shape:
canonical UUIDs, RFC 3339 times with an offset, plain numbers and strings, no unknown keys.
For that shape this module decodes the JSON with msgspec into typed structs (the types,
unknown keys and list bounds are checked natively, while parsing), checks the rest of the
rules of ``broker.schemas.MeterReading`` and ``cloud.store.line_protocol.check_reading``
in one pass, and writes the line ``encode_reading`` would write, character for character.

It is conservative, never lenient: anything it is not sure about (an unusual but maybe
valid spelling, or an error) makes it answer None, and the caller runs the full pydantic
validator, which either accepts the payload or names exactly what is wrong. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec
from msgspec import UNSET

from cloud.ingest.reading_time import UnusualTime, to_ns
from cloud.ingest.wire_structs import Meter, MeterType, NumericReading, Reading, decode
from cloud.store import schema
from cloud.store.line_protocol import escape_key, escape_measurement, quote_string

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_METER_ID_FORBIDDEN = re.compile(r"[/+#\x00]")
_INT64 = 2 ** 63

_MEASUREMENT = escape_measurement(schema.MEASUREMENT)
_TEXT_SUFFIX = escape_key(schema.TEXT_SUFFIX)
_NUMBER = attrgetter("numericalValue")
_TEXT = attrgetter("textValue")
_DATE = attrgetter("date")
_UNIT = attrgetter("unit")
_PID = attrgetter("operationalPropertyDefinition.propertyId")
_HISTORICAL = {True: f"{schema.HISTORICAL}=true", False: f"{schema.HISTORICAL}=false"}
_READING_ID = f'{schema.READING_ID}="'
_derived_id = schema.derived_id
_reading_key = schema.reading_key


# A deployment's per-value rule (the catalogue's, say): (property id, unit, is text, meter
# class) -> acceptable. Called once per distinct value shape in a message.
ValueCheck = Callable[[str, str | None, bool, str | None], bool]


_FLOATS = msgspec.json.Encoder()


class _Unsure(Exception):
    """The payload is not in the fast path's shape; the full validator decides."""


# What a property value writes before and after its value, by (property id, unit), validated
# once: property ids and units repeat across every reading of a fleet. Bounded, so random ids
# cannot grow it forever.
_Spec = tuple[str, str, str, str]  # (numeric prefix, text prefix, unit suffix: full point, lean point)
_SPECS: dict[tuple[str, str | None], _Spec] = {}
_CACHE_LIMIT = 4096


def _spec(pid: str, unit: str | None) -> _Spec:
    if not 1 <= len(pid) <= 128 or schema.property_id_problem(pid):
        raise _Unsure
    key = escape_key(pid)
    if unit is not None and not 1 <= len(unit) <= 32:
        raise _Unsure
    full, lean = unit, schema.unit_field(pid, unit)
    spec = (f"{key}=", f"{key}{_TEXT_SUFFIX}=",
            "" if full is None else f",{key}{schema.UNIT_SUFFIX}={quote_string(full)}",
            "" if lean is None else f",{key}{schema.UNIT_SUFFIX}={quote_string(lean)}")
    if len(_SPECS) >= _CACHE_LIMIT:
        _SPECS.clear()
    _SPECS[(pid, unit)] = spec
    return spec


def _meter_class(meter: Meter, expected_id: str) -> str | None:
    """The meter's class, after the checks the schema makes of a meterIndividual."""
    if meter.meterIndividualId != expected_id:
        raise _Unsure
    # The schema reads physicalMeterType first and physicalMeter only when the first is absent.
    kind = meter.physicalMeterType if meter.physicalMeterType is not UNSET else meter.physicalMeter
    if kind is None or kind is UNSET:
        return None
    assert isinstance(kind, MeterType)
    if kind.physicalElementId is not None and not _UUID.fullmatch(kind.physicalElementId):
        raise _Unsure
    return kind.physicalMeterClass


class _Encoder:
    """The lines of one payload: state that is shared by its readings (one meter, one class)."""

    __slots__ = ("head", "stamps", "meter", "meter_doc", "meter_class", "checked", "shapes", "numbers", "value_check")

    def __init__(self, *, meter: str, value_check: ValueCheck | None) -> None:
        self.head = f"{_MEASUREMENT},{schema.METER_TAG}={escape_key(meter)} "
        # Reading times repeat across a fleet's meters (they read at the same quarter hours).
        self.stamps = _STAMPS
        self.meter = meter
        self.meter_doc: Meter | None = None
        self.meter_class: str | None = None
        self.value_check = value_check
        # (property id, unit) -> spec, for numeric values already judged by value_check for
        # this payload's meter class; text values are rare and judged each time.
        self.checked: dict[tuple[str, str | None], _Spec] = {}
        # (property ids, units, lean) of a reading -> the template writing its numbers, judged too.
        self.shapes: dict[tuple[tuple[str, ...], tuple[str | None, ...], bool], str] = {}
        # The numbers of the pending lines, in order (see _finish).
        self.numbers: list[float] = []

    def line(self, reading: Reading, *, alone: bool = False) -> str | _Pending:
        """The reading's line; its numbers left pending for :func:`_finish` unless it is ``alone``
        in its payload (then formatted here, as ``repr`` formats them)."""
        reading_id = reading.meterReadingIdentifier
        if not _UUID.fullmatch(reading_id):
            raise _Unsure
        reading_time = reading.readingTime
        stamps = self.stamps
        stamp = stamps.get(reading_time)
        if stamp is None:
            stamp = to_ns(reading_time, stamps)
        # Every reading of a message repeats the same meterIndividual: check it once.
        meter_doc = reading.meterIndividual
        if meter_doc != self.meter_doc:
            meter_class = _meter_class(meter_doc, self.meter)
            if meter_class != self.meter_class:
                # What value_check judged, it judged for the meter's class: judged again.
                self.checked.clear()
                self.shapes.clear()
                self.meter_class = meter_class
            self.meter_doc = meter_doc
        # Lean (see cloud.store.schema) when the id is the one derived from meter and time.
        lean = stamp % 1000 == 0 and reading_id == _derived_id(self.meter, stamp)
        if lean:
            parts = [self.head, _HISTORICAL[reading.historical]]
        else:
            parts = [self.head, _READING_ID, reading_id, '",', _HISTORICAL[reading.historical]]
        fault = reading.faultCode
        if fault is not None:
            if len(fault) > 64:
                raise _Unsure
            parts.append(f",{schema.FAULT_CODE}={quote_string(fault)}")
        sequence = reading.sequenceNumber
        if sequence is not None:
            if not -_INT64 <= sequence < _INT64:
                raise _Unsure
            parts.append(f",{schema.SEQUENCE}={sequence}i")
        if lean:
            parts.append(f",{schema.READING_KEY}={_reading_key(reading_id, self.meter_class)}i")
        elif self.meter_class is not None:
            parts.append(f',{schema.METER_CLASS}="{self.meter_class}"')
        unit_at = 3 if lean else 2
        values = reading.propertyValues
        # The usual reading: numbers only, each captured at the reading time, in the same
        # properties and units as the message's other readings. One cached template writes
        # all its values, formatted later for the whole payload at once (see _finish); the
        # loop below does the same a value at a time.
        count = len(values)
        if type(reading) is NumericReading or (
                None not in map(_NUMBER, values) and list(map(_TEXT, values)).count(None) == count):
            if list(map(_DATE, values)).count(reading_time) == count:
                shape = (tuple(map(_PID, values)), tuple(map(_UNIT, values)), lean)
                template = self.shapes.get(shape)
                if template is None:
                    template = self._template(shape)
                if alone:
                    return f"{''.join(parts)}{template % tuple(map(repr, map(_NUMBER, values)))} {stamp}"
                self.numbers.extend(map(_NUMBER, values))
                return _Pending("".join(parts), template, f" {stamp}", count)
        checked = self.checked
        seen = set()
        for value in values:
            pid = value.operationalPropertyDefinition.propertyId
            unit = value.unit
            seen.add(pid)
            number = value.numericalValue
            if number is not None and value.textValue is None:
                spec = checked.get((pid, unit))
                if spec is None:
                    spec = self._judge(pid, unit, is_text=False)
                    checked[(pid, unit)] = spec
                parts.append(f",{spec[0]}{number!r}{spec[unit_at]}")
            else:
                text = value.textValue
                if number is not None or text is None or len(text) > 1024:
                    raise _Unsure
                spec = self._judge(pid, unit, is_text=True)
                parts.append(f",{spec[1]}{quote_string(text)}{spec[unit_at]}")
            date = value.date
            if date != reading_time:
                value_stamp = stamps.get(date)
                if value_stamp is None:
                    value_stamp = to_ns(date, stamps)
                if value_stamp != stamp:
                    parts.append(f",{escape_key(pid)}{schema.DATE_SUFFIX}={value_stamp}i")
        if len(seen) != len(values):
            raise _Unsure  # a property given twice in one reading
        parts.append(f" {stamp}")
        return "".join(parts)

    def _template(self, shape: tuple[tuple[str, ...], tuple[str | None, ...], bool]) -> str:
        """A %-template writing a reading's numbers (as text) in ``shape`` (property ids, units,
        whether the point is lean)."""
        # At one reading per message every payload has a new encoder: templates are kept across
        # payloads too, by what judged them (the check and the meter class).
        key = (shape, self.meter_class, self.value_check)
        template = _TEMPLATES.get(key)
        if template is None:
            pids, units, lean = shape
            if len(set(pids)) != len(pids):
                raise _Unsure  # a property given twice in one reading
            fields = []
            for pid, unit in zip(pids, units, strict=True):
                spec = self._judge(pid, unit, is_text=False)
                fields.append(f",{_percent(spec[0])}%s{_percent(spec[3] if lean else spec[2])}")
            template = _remember(_TEMPLATES, key, "".join(fields))
        if len(self.shapes) < _CACHE_LIMIT:
            self.shapes[shape] = template
        return template

    def _judge(self, pid: str, unit: str | None, *, is_text: bool) -> _Spec:
        spec = _SPECS.get((pid, unit)) or _spec(pid, unit)
        if self.value_check is not None and not self.value_check(pid, unit, is_text, self.meter_class):
            raise _Unsure
        return spec


# An encoder per meter (and value check), kept across payloads: at one reading per message
# each payload is one meter's next reading, judged as the last one was. Bounded.
_ENCODERS: dict[tuple[str, ValueCheck | None], _Encoder] = {}
_STAMPS: dict[str, int] = {}
_TEMPLATES: dict[tuple[object, ...], str] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _percent(text: str) -> str:
    """``text`` as literal text of a %-template."""
    return text.replace("%", "%%")


class _Pending:
    """A reading's line but for its numbers: before them, the %-template they go into, after."""

    __slots__ = ("before", "template", "after", "count")

    def __init__(self, before: str, template: str, after: str, count: int) -> None:
        self.before = before
        self.template = template
        self.after = after
        self.count = count


def _finish(lines: list[str | _Pending], numbers: list[float]) -> list[str]:
    """Fill the pending lines' numbers in, formatted as ``repr`` formats them.

    msgspec writes the same shortest round-trip digits as ``repr`` in one call for the whole
    payload, except in exponent notation and below 1e-4 (``1e16`` for ``1e+16``, ``0.00001``
    for ``1e-05``): if either shows up anywhere, ``repr`` formats them all.
    """
    if not numbers:
        return lines  # type: ignore[return-value]  # nothing pending
    text = _FLOATS.encode(numbers)
    if b"e" in text or b"0.0000" in text:
        formatted = tuple(map(repr, numbers))
    else:
        formatted = tuple(text[1:-1].decode().split(","))
    out = []
    at = 0
    for line in lines:
        if type(line) is _Pending:
            count = line.count
            out.append(line.before + line.template % formatted[at:at + count] + line.after)
            at += count
        else:
            out.append(line)
    return out


def encode_payload(payload: bytes | memoryview | str, *, meter: str, concentrator_id: str,
                   value_check: ValueCheck | None = None) -> list[str] | None:
    """The line-protocol lines for a payload's readings (one reading or a ``meterReadings``
    batch) published under ``meter`` by ``concentrator_id`` (not stored); None when the full validator
    must decide (the payload is unusual or wrong, or ``value_check`` refused a value)."""
    if not 1 <= len(meter) <= 128 or _METER_ID_FORBIDDEN.search(meter) or schema.identifier_problem(
            meter, what="meterIndividualId"):
        return None
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    try:
        readings = decode(payload)
        if readings is None:
            return None
        encoder = _ENCODERS.get((meter, value_check))
        if encoder is None:
            encoder = _remember(_ENCODERS, (meter, value_check), _Encoder(meter=meter, value_check=value_check))
        if len(_STAMPS) >= _CACHE_LIMIT:
            _STAMPS.clear()
        if len(readings) == 1:  # the live shape
            return [encoder.line(readings[0], alone=True)]  # type: ignore[list-item]  # alone: a str
        encoder.numbers = numbers = []
        return _finish([encoder.line(reading) for reading in readings], numbers)
    except (_Unsure, UnusualTime):
        return None


def encode_batch(payload: bytes | memoryview, *,
                 value_check: ValueCheck | None = None) -> list[tuple[str, str]] | None:
    """(meter, line) for each reading of a live batch (``concentrator/{cid}/batch/meterReading``:
    a ``meterReadings`` batch whose readings may be of several meters, each named by its own
    ``meterIndividual``), in order; None when the full validator must decide, as for
    :func:`encode_payload`."""
    try:
        readings = decode(payload)
        if readings is None:
            return None
        if len(_STAMPS) >= _CACHE_LIMIT:
            _STAMPS.clear()
        encoders: dict[str, _Encoder] = {}  # this payload's, each meter's kept across payloads
        numbers: list[float] = []  # one list for every encoder: _finish fills the lines in order
        meters, lines = [], []
        for reading in readings:
            meter = reading.meterIndividual.meterIndividualId
            encoder = encoders.get(meter)
            if encoder is None:
                encoder = _ENCODERS.get((meter, value_check))  # only a valid meter id has one
                if encoder is None:
                    if not 1 <= len(meter) <= 128 or _METER_ID_FORBIDDEN.search(meter) or schema.identifier_problem(
                            meter, what="meterIndividualId"):
                        return None
                    encoder = _remember(_ENCODERS, (meter, value_check), _Encoder(meter=meter, value_check=value_check))
                encoders[meter] = encoder
                encoder.numbers = numbers
            meters.append(meter)
            lines.append(encoder.line(reading))
        return list(zip(meters, _finish(lines, numbers), strict=True))
    except (_Unsure, UnusualTime):
        return None
