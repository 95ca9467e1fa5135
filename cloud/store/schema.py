"""The InfluxDB layout of meter readings: measurement, tag and field names (see docs/INFLUX_SCHEMA.md).

One point per MeterReading in measurement ``meter_reading``, tagged only by ``meter`` so series
cardinality equals the number of meters. Each operational property becomes fields named from
its id; the reading's own attributes are fields with fixed names that no property id may take.
"""

from __future__ import annotations

import re

MEASUREMENT = "meter_reading"
METER_TAG = "meter"

READING_ID = "reading_id"
FAULT_CODE = "fault_code"
HISTORICAL = "historical"
SEQUENCE = "seq"
CONCENTRATOR = "concentrator"
METER_CLASS = "meter_class"
# A reading the concentrator stamped before its first time sync (it booted offline): seconds its
# clock had run free since its start, and its offset from the cloud's at the last sync before.
CLOCK_FREE_RUNNING = "clock_free_running_s"
CLOCK_LAST_OFFSET = "clock_last_offset_s"
# Seconds an aggregated reading summarises (its interval), absent on a plain reading.
INTERVAL = "interval_s"
META_FIELDS = frozenset({READING_ID, FAULT_CODE, HISTORICAL, SEQUENCE, CONCENTRATOR, METER_CLASS,
                         CLOCK_FREE_RUNNING, CLOCK_LAST_OFFSET, INTERVAL})

# Suffixes of the fields a property id gives rise to; the bare id holds the numerical value.
TEXT_SUFFIX = "__text"
UNIT_SUFFIX = "__unit"
DATE_SUFFIX = "__date"
# An aggregated reading's statistics of a numeric property over its interval.
MEAN_SUFFIX = "__mean"
MIN_SUFFIX = "__min"
MAX_SUFFIX = "__max"
SUFFIXES = (TEXT_SUFFIX, UNIT_SUFFIX, DATE_SUFFIX, MEAN_SUFFIX, MIN_SUFFIX, MAX_SUFFIX)
SEPARATOR = "__"

# InfluxDB 1.x cannot round-trip a backslash that precedes a space, comma or equals sign (or
# ends the key), nor a line break, in tag values and field keys; rather than store something
# else than was sent, such identifiers are refused.
_UNSTORABLE = re.compile(r"[\\\n\r\x00]")


def identifier_problem(value: str, *, what: str) -> str | None:
    """Why ``value`` cannot be a tag value or field-key stem, or None if it can."""
    if not value:
        return f"{what} is empty"
    if _UNSTORABLE.search(value):
        return f"{what} {value[:80]!r} contains a backslash, line break or NUL, which InfluxDB cannot store"
    return None


def property_id_problem(property_id: str) -> str | None:
    """Why ``property_id`` cannot name fields in the schema, or None if it can."""
    problem = identifier_problem(property_id, what="propertyId")
    if problem:
        return problem
    if property_id in META_FIELDS or property_id in ("time", METER_TAG):
        return f"propertyId {property_id!r} is reserved by the store"
    if SEPARATOR in property_id:
        return f"propertyId {property_id!r} may not contain {SEPARATOR!r} (the store's suffix separator)"
    if property_id.startswith("_"):
        return f"propertyId {property_id!r} may not start with '_' (reserved by InfluxDB 2.x)"
    return None


def split_field(field: str) -> tuple[str, str]:
    """Split a property field name into (property id, suffix); the suffix is '' for the value."""
    for suffix in SUFFIXES:
        if field.endswith(suffix):
            return field[: -len(suffix)], suffix
    return field, ""
