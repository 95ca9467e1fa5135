"""The InfluxDB layout of meter readings: measurement, tag and field names (see docs/INFLUX_SCHEMA.md).

One point per MeterReading in measurement ``meter_reading``, tagged only by ``meter`` so series
cardinality equals the number of meters. Each operational property becomes fields named from
its id; the reading's own attributes are fields with fixed names that no property id may take.

Two layouts share the measurement. A *lean* point (a reading whose id is the one derived from
its meter and time, as every Gridwire adapter makes them) has no ``reading_id`` and carries an
``rk``: its meter class, and units only where they differ from the store's implied ones
(``cloud.store.units``). A *full* point (any other id, and every point written before the lean
layout) carries its ``reading_id``, its ``meter_class`` and every unit as sent. Reading back:
no ``reading_id`` means the derived id; an ``rk`` means implied units where none is named.
"""

from __future__ import annotations

import re
from hashlib import sha1
from datetime import UTC, datetime, timedelta

from broker.schemas.meter_reading import READING_ID_NAMESPACE
from cloud.store.units import IMPLIED_UNITS_V1

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
# A lean point's integer key: its meter class's code in bits 0-2 and the first 20 bits of its
# (derived) reading id above them, so a delete by id finds the point's candidates with an
# integer comparison and confirms each by deriving its id again.
READING_KEY = "rk"
META_FIELDS = frozenset({READING_ID, FAULT_CODE, HISTORICAL, SEQUENCE, CONCENTRATOR, METER_CLASS,
                         CLOCK_FREE_RUNNING, CLOCK_LAST_OFFSET, INTERVAL, READING_KEY})

METER_CLASS_CODES = {"ELECTRICITY": 1, "GAS": 2, "WATER": 3, "HEAT": 4}
_CLASS_OF_CODE = {code: name for name, code in METER_CLASS_CODES.items()}
_CLASS_BITS = 3


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


# --- the lean layout ---------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMES: dict[int, str] = {}
_NAMESPACE = READING_ID_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_CACHE_LIMIT = 65_536


def implied_unit(property_id: str) -> str | None:
    """The unit a lean point's value has when the point names none."""
    return IMPLIED_UNITS_V1.get(property_id)


def unit_field(property_id: str, unit: str | None) -> str | None:
    """What a lean point stores as ``<propertyId>__unit``: None (nothing) when ``unit`` is the
    implied one, ``""`` for no unit where one is implied, else the unit."""
    implied = IMPLIED_UNITS_V1.get(property_id)
    if unit == implied:
        return None
    return "" if unit is None else unit


def stored_unit(property_id: str, stored: str | None, *, lean: bool) -> str | None:
    """A value's unit from its ``__unit`` field (``stored``) on a lean or a full point."""
    if stored is None:
        return IMPLIED_UNITS_V1.get(property_id) if lean else None
    return stored or None


def derived_id(meter: str, stamp_ns: int) -> str:
    """``MeterReading.derive_id`` of a meter at a stored time (ns), as canonical text."""
    iso = _TIMES.get(stamp_ns)
    if iso is None:
        iso = (_EPOCH + timedelta(microseconds=stamp_ns // 1000)).isoformat()
        if len(_TIMES) >= _CACHE_LIMIT:
            _TIMES.clear()
        _TIMES[stamp_ns] = iso
    # uuid.uuid5 by hand (its UUID object was most of the cost at one reading per message):
    # the SHA-1's first 16 bytes with version 5 and the RFC 4122 variant set.
    h = sha1(_NAMESPACE + f"{meter}|{iso}".encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def is_derived(reading_id: str, meter: str, stamp_ns: int) -> bool:
    """Whether a reading's id (canonical text) is the one derived from its meter and stored time."""
    return stamp_ns % 1000 == 0 and reading_id == derived_id(meter, stamp_ns)


def reading_key(reading_id: str, meter_class: str | None) -> int:
    """A lean point's ``rk`` for a reading id (canonical text) and meter class."""
    return (int(reading_id[:5], 16) << _CLASS_BITS) | METER_CLASS_CODES.get(meter_class or "", 0)


def key_range(reading_id: str) -> tuple[int, int]:
    """The ``rk`` values (low inclusive, high exclusive) a reading with this id may have."""
    low = int(reading_id[:5], 16) << _CLASS_BITS
    return low, low + (1 << _CLASS_BITS)


def class_of_key(key: int) -> str | None:
    """The meter class a lean point's ``rk`` records (None: the reading named none)."""
    return _CLASS_OF_CODE.get(key & ((1 << _CLASS_BITS) - 1))
