"""The OMDP reference implementation's flat payload, read into MeterReadings.

The Open Meter Data Platform's reference SmartMeterAdapter publishes, on
``smartMeterMessage/{meterId}/{topic}``, and its reference concentrator forwards unmodified, on
``concentrator/{cid}/smartMeterMessage/{meterId}/{topic}``, a flat document::

    {"readingTime": "2026-06-01T10:00:00Z", "meterId": "meter-1",
     "propertyValues": [{"propertyName": "1.7.0", "numericalValue": "133", "unit": "kW"}]}

``propertyName`` is a short OBIS code and ``numericalValue`` a string. The pieces here are pure
and shared: the concentrator's local listener maps an external adapter's payload with
:func:`reading_from_reference` (no catalogue at the edge: a ``numericalValue`` is a number, a
``textValue`` text, the unit as sent), and cloud ingest (``cloud/ingest/omdp_reference.py``) maps
a reference concentrator's with the catalogue's value types and units. docs/OMDP.md describes both.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from broker.lean.base import load_json
from broker.lean.reading import MeterIndividual, MeterReading

# A short OBIS code: C.D.E, optionally with A-B: before it and *F after it, or A.B.C.D.E.F.
_OBIS = re.compile(r"^(?:(\d{1,3})-(\d{1,3}):)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[.*](\d{1,3}))?$")
_FULL_OBIS = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
MAX_VALUES = 512
# The specific topic the reference adapter publishes its (live) readings on.
REFERENCE_TOPIC = "readings"


def is_reference_payload(document: Any) -> bool:
    """Whether a parsed payload has the reference implementation's shape (not Gridwire's)."""
    if not isinstance(document, dict) or "meterIndividual" in document or "meterReadings" in document:
        return False
    values = document.get("propertyValues")
    return ("meterId" in document and isinstance(values, list) and bool(values)
            and all(isinstance(v, dict) and "propertyName" in v and "operationalPropertyDefinition" not in v
                    for v in values))


def property_id(short_code: str) -> str:
    """The catalogue id of a reference ``propertyName``: ``1.7.0`` or ``1-0:1.7.0`` -> ``OBIS_1.7.0``."""
    code = short_code.strip()
    full = _FULL_OBIS.match(code)
    if full:
        return f"OBIS_{int(full[3])}.{int(full[4])}.{int(full[5])}"
    match = _OBIS.match(code)
    if not match:
        raise ValueError(f"propertyName {short_code!r} is not an OBIS code (C.D.E, A-B:C.D.E or A.B.C.D.E.F)")
    return f"OBIS_{int(match[3])}.{int(match[4])}.{int(match[5])}"


def reading_time(raw: Any, *, time_zone: str | None) -> datetime:
    """The reading time: ISO 8601 with an offset, epoch seconds or milliseconds (UTC), or a local
    time read in ``time_zone``; a local time without one is refused."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"readingTime {raw!r} is not a time")
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            raise ValueError(f"readingTime {raw!r} is not a time")
        seconds = raw / 1000.0 if raw > 1e11 else float(raw)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"readingTime {raw!r} is out of range") from None
    if not isinstance(raw, str):
        raise ValueError(f"readingTime {raw!r} is not a time")
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"readingTime {raw!r} is not an ISO 8601 time") from None
    if moment.tzinfo is not None:
        return moment
    if time_zone is None:
        raise ValueError(f"readingTime {raw!r} has no time zone")
    return moment.replace(tzinfo=ZoneInfo(time_zone))


def number(raw: Any, where: str) -> float:
    """A value as a finite float: a JSON number or a decimal string (a decimal comma is read too)."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"{where}: numericalValue {raw!r} is not a number")
    try:
        value = float(raw.strip().replace(",", ".") if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: numericalValue {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: numericalValue {raw!r} is not a finite number")
    return value


def reading_from_reference(document: dict[str, Any], *, meter: str, historical: bool = False,
                           individual: MeterIndividual | None = None) -> MeterReading:
    """One MeterReading from a reference payload without a catalogue (the edge's view): the
    property from the OBIS code, ``numericalValue`` a number, ``textValue`` text, the unit as sent,
    the id derived from (meter, time) so that a payload sent again is stored once, and the meter
    as ``individual`` (its adapter config's: class, element) says, else by id only. ValueError
    names what cannot be read."""
    meter_id = document.get("meterId")
    if str(meter_id) != meter:
        raise ValueError(f"meterId {meter_id!r} does not match the topic's meter {meter!r}")
    moment = reading_time(document.get("readingTime"), time_zone=None)
    raw_values = document["propertyValues"]
    if len(raw_values) > MAX_VALUES:
        raise ValueError(f"{len(raw_values)} propertyValues; at most {MAX_VALUES}")
    values = []
    for n, raw in enumerate(raw_values):
        where = f"propertyValues.{n}"
        value: dict[str, Any] = {"unit": raw.get("unit"), "date": moment.isoformat(),
                                 "operationalPropertyDefinition": {"propertyId": property_id(
                                     str(raw.get("propertyName", "")))}}
        if raw.get("numericalValue") is not None:
            value["numericalValue"] = number(raw["numericalValue"], where)
        elif raw.get("textValue") is not None:
            value["textValue"] = str(raw["textValue"])
        else:
            raise ValueError(f"{where}: neither numericalValue nor textValue")
        values.append(value)
    return MeterReading.validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(meter, moment)), "historical": historical,
        "readingTime": moment.isoformat(), "propertyValues": values,
        "meterIndividual": ({"meterIndividualId": meter} if individual is None
                            else individual.dump(exclude_none=True)),
    })


def parse_reference_message(payload: bytes | str, *, meter: str, historical: bool = False,
                            individual: MeterIndividual | None = None) -> list[MeterReading] | None:
    """The readings of a reference payload, None when the payload does not have that shape (not
    JSON, or Gridwire's own); ValueError naming what cannot be read in one that does."""
    try:
        document = load_json(payload)
    except ValueError:
        return None
    if not is_reference_payload(document):
        return None
    return [reading_from_reference(document, meter=meter, historical=historical, individual=individual)]
