"""Encode OMDP MeterReadings as InfluxDB line protocol (pure: no I/O).

Escaping follows the v1 line protocol, which InfluxDB 2.x and 3.x accept unchanged:
measurement names escape commas and spaces; tag keys, tag values and field keys escape
commas, equals signs and spaces; string field values are double-quoted with backslashes and
double quotes escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from broker.errors import Invalid
from broker.schemas import MeterReading
from cloud.store import schema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


class LineProtocolError(Invalid):
    """A reading that cannot be stored as the schema says (reserved or unstorable names)."""


def escape_key(value: str) -> str:
    """Escape a tag key, tag value or field key."""
    return value.translate(_KEY_ESCAPES)


def escape_measurement(value: str) -> str:
    return value.translate(_MEASUREMENT_ESCAPES)


def quote_string(value: str) -> str:
    """A string field value: double-quoted, backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_float(value: float) -> str:
    if not math.isfinite(value):
        raise LineProtocolError(f"InfluxDB cannot store the float {value!r}")
    # repr() is the shortest string that reads back as the same double; InfluxDB parses it
    # as a float (no 'i' suffix), so 5.0 and 5 both stay floats.
    return repr(float(value))


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (integer arithmetic, no float rounding)."""
    if moment.tzinfo is None:
        raise LineProtocolError("timestamps must carry a timezone")
    return ((moment - _EPOCH) // timedelta(microseconds=1)) * 1000


def from_ns(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value // 1000)


def check_reading(reading: MeterReading) -> str | None:
    """Why ``reading`` cannot be stored, or None if it can; lets a caller set one reading aside."""
    problem = schema.identifier_problem(reading.meter_id, what="meterIndividualId")
    if problem:
        return problem
    seen: set[str] = set()
    for value in reading.property_values:
        pid = value.property_id
        problem = schema.property_id_problem(pid)
        if problem:
            return problem
        if pid in seen:
            return f"propertyId {pid!r} appears twice in one reading"
        seen.add(pid)
        if value.unit is not None and not value.unit:
            return f"unit of {pid!r} is an empty string"
        if value.numerical_value is not None and not math.isfinite(value.numerical_value):
            return f"numericalValue of {pid!r} is not finite"
    return None


def encode_reading(reading: MeterReading, *, concentrator_id: str | None = None) -> str:
    """One line of line protocol (no trailing newline) for one reading; timestamp in ns.

    Lean when the reading's id is the one derived from its meter and time, full otherwise
    (see ``cloud.store.schema``). ``concentrator_id`` is accepted and not stored: nothing reads
    it back, and the registry knows each meter's concentrator. Raises LineProtocolError naming
    the reading and the problem.
    """
    problem = check_reading(reading)
    if problem:
        raise LineProtocolError(f"reading {reading.meter_reading_identifier}: {problem}")
    stamp = to_ns(reading.reading_time)
    reading_id = str(reading.meter_reading_identifier)
    lean = schema.is_derived(reading_id, reading.meter_id, stamp)
    meter_type = reading.meter_individual.physical_meter_type
    meter_class = meter_type.physical_meter_class if meter_type is not None else None
    fields: list[str] = []
    if not lean:
        fields.append(f"{schema.READING_ID}={quote_string(reading_id)}")
    fields.append(f"{schema.HISTORICAL}={'true' if reading.historical else 'false'}")
    if reading.fault_code is not None:
        fields.append(f"{schema.FAULT_CODE}={quote_string(reading.fault_code)}")
    if reading.sequence_number is not None:
        fields.append(f"{schema.SEQUENCE}={int(reading.sequence_number)}i")
    if reading.interval is not None:
        fields.append(f"{schema.INTERVAL}={format_float(reading.interval.seconds)}")
    if lean:
        fields.append(f"{schema.READING_KEY}={schema.reading_key(reading_id, meter_class)}i")
    elif meter_class is not None:
        fields.append(f"{schema.METER_CLASS}={quote_string(meter_class)}")
    if reading.clock is not None and not reading.clock.synchronised:
        fields.append(f"{schema.CLOCK_FREE_RUNNING}={format_float(reading.clock.free_running_seconds)}")
        if reading.clock.last_offset_seconds is not None:
            fields.append(f"{schema.CLOCK_LAST_OFFSET}={format_float(reading.clock.last_offset_seconds)}")
    for value in reading.property_values:
        key = escape_key(value.property_id)
        if value.numerical_value is not None:
            fields.append(f"{key}={format_float(value.numerical_value)}")
        else:
            fields.append(f"{key}{escape_key(schema.TEXT_SUFFIX)}={quote_string(value.text_value or '')}")
        unit = schema.unit_field(value.property_id, value.unit) if lean else value.unit
        if unit is not None:
            fields.append(f"{key}{schema.UNIT_SUFFIX}={quote_string(unit)}")
        value_stamp = to_ns(value.date)
        if value_stamp != stamp:
            fields.append(f"{key}{schema.DATE_SUFFIX}={value_stamp}i")
        stats = value.statistics
        if stats is not None:
            fields += [f"{key}{schema.MEAN_SUFFIX}={format_float(stats.mean)}",
                       f"{key}{schema.MIN_SUFFIX}={format_float(stats.min)}",
                       f"{key}{schema.MAX_SUFFIX}={format_float(stats.max)}"]
    return (
        f"{escape_measurement(schema.MEASUREMENT)},{schema.METER_TAG}={escape_key(reading.meter_id)} "
        f"{','.join(fields)} {stamp}"
    )


def encode_batch(readings: Iterable[MeterReading], *, concentrator_id: str | None = None) -> str:
    """Several readings as one write body, newline-separated."""
    return "\n".join(encode_reading(r, concentrator_id=concentrator_id) for r in readings)
