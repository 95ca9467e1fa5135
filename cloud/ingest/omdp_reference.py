"""The OMDP reference concentrator's payload, mapped to MeterReadings (opt-in per concentrator).

The Open Meter Data Platform's reference concentrator publishes, on the same topic as Gridwire's
(``concentrator/{cid}/smartMeterMessage/{meterId}/readings``), a flat document::

    {"readingTime": "...", "meterId": "...",
     "propertyValues": [{"propertyName": "1.7.0", "numericalValue": "133", "unit": "kW"}]}

``propertyName`` is a short OBIS code, ``numericalValue`` a string. Ingest's own validator
refuses it; this module is ingest's fallback for such a message (``IngestConsumer(translate=)``):

- from a concentrator whose registry entry has ``payloadFormat: omdp-reference``, each value
  becomes a PropertyValue of the catalogue's property (``1.7.0`` -> ``OBIS_1.7.0``), the string
  a number, the unit checked against the property's allowed units, the reading time checked
  for a time zone (or read in the concentrator's ``payloadTimeZone``); the reading's id is
  derived from (meter, time), so a redelivery is stored once;
- anything it cannot map is refused with the reason (ingest dead-letters the message);
- from any other concentrator the reason names the format and the registry setting that
  accepts it, instead of a schema error.

The format's pure pieces (its shape, OBIS codes, times, numbers) are in
``broker/schemas/omdp_reference.py``, shared with the concentrator's local listener, which reads
the reference adapter's payload with them. docs/OMDP.md describes both formats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic_core

from broker import topics
from broker.schemas import MeterReading
from broker.lean.omdp_reference import MAX_VALUES, is_reference_payload, number, property_id
from broker.lean.omdp_reference import reading_time as shared_reading_time
from broker.session import Message
from cloud.catalogue import Catalogue, default_catalogue
from cloud.registry import DeviceNotFound, PayloadFormat, Registry

log = logging.getLogger(__name__)

FORMAT = PayloadFormat.OMDP_REFERENCE.value


@dataclass(frozen=True, slots=True)
class ConcentratorFormat:
    """What the registry says about one concentrator's payloads."""

    payload_format: str | None = None
    time_zone: str | None = None

    @property
    def reference(self) -> bool:
        return self.payload_format == FORMAT


# The registry's answer for a concentrator id (None: not registered).
Lookup = Callable[[str], Awaitable[ConcentratorFormat | None]]


def reading_time(raw: Any, *, time_zone: str | None) -> datetime:
    """The shared reading of a reference time, naming the registry setting a local time needs."""
    try:
        return shared_reading_time(raw, time_zone=time_zone)
    except ValueError as exc:
        if time_zone is None and str(exc).endswith("has no time zone"):
            raise ValueError(f"{exc}, and the concentrator's registry entry has no payloadTimeZone to read "
                             f"it in") from None
        raise


def translate(document: dict[str, Any], *, meter: str, fmt: ConcentratorFormat, catalogue: Catalogue) -> MeterReading:
    """One MeterReading from a reference payload; ValueError naming what cannot be mapped."""
    meter_id = document.get("meterId")
    if str(meter_id) != meter:
        raise ValueError(f"meterId {meter_id!r} does not match the topic's meter {meter!r}")
    moment = reading_time(document.get("readingTime"), time_zone=fmt.time_zone)
    raw_values = document["propertyValues"]
    if len(raw_values) > MAX_VALUES:
        raise ValueError(f"{len(raw_values)} propertyValues; at most {MAX_VALUES}")
    values, classes = [], set()
    for n, raw in enumerate(raw_values):
        where = f"propertyValues.{n}"
        pid = property_id(str(raw.get("propertyName", "")))
        definition = catalogue.property(pid)
        if definition is None:
            raise ValueError(f"{where}: propertyName {raw.get('propertyName')!r} ({pid}) is not in the OMDP catalogue")
        unit = raw.get("unit")
        if definition.allowed_units and unit not in definition.allowed_units:
            raise ValueError(f"{where}: unit {unit!r} is not allowed for {pid} (allowed: "
                             f"{', '.join(definition.allowed_units)})")
        value: dict[str, Any] = {"unit": unit, "date": moment.isoformat(),
                                 "operationalPropertyDefinition": {
                                     "propertyId": pid, "propertyDescription": definition.property_description}}
        if definition.value_type == "number":
            value["numericalValue"] = number(raw.get("numericalValue"), where)
        else:
            text = raw.get("textValue", raw.get("numericalValue"))
            if text is None:
                raise ValueError(f"{where}: no value")
            value["textValue"] = str(text)
        values.append(value)
        classes.update(definition.meter_classes)
    individual: dict[str, Any] = {"meterIndividualId": meter}
    if len(classes) == 1:
        individual["physicalMeterType"] = {"physicalMeterClass": next(iter(classes))}
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(meter, moment)),
        "readingTime": moment.isoformat(), "propertyValues": values, "meterIndividual": individual,
    })


def not_enabled_reason(concentrator: str) -> str:
    return (f"payload is in the OMDP reference concentrator's format (flat propertyValues with propertyName "
            f"and string numericalValue), which concentrator {concentrator!r} is not set to send: set its "
            f"registry entry's payloadFormat to {FORMAT!r} (PATCH /v1/installation/devices/{concentrator}) to accept it")


class ReferenceAdapter:
    """Ingest's fallback for messages its validator refused (``IngestConsumer(translate=self)``).

    Returns None for a message not in the reference format (ingest keeps its own reason),
    the translated readings for an enabled concentrator, or raises ValueError with the reason.
    A concentrator's registry entry is looked up on its first reference message and kept for
    ``ttl`` seconds.
    """

    def __init__(self, *, lookup: Lookup, catalogue: Catalogue | None = None, ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._catalogue = catalogue or default_catalogue()
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[float, ConcentratorFormat | None]] = {}
        self.translated = 0

    async def __call__(self, message: Message) -> list[MeterReading] | None:
        try:
            parsed = topics.parse(message.topic)
            document = pydantic_core.from_json(bytes(message.payload))
        except (topics.TopicError, ValueError):
            return None
        if parsed.kind != "meter_message" or not is_reference_payload(document):
            return None
        assert parsed.concentrator is not None and parsed.meter is not None
        fmt = await self._format_of(parsed.concentrator)
        if fmt is None or not fmt.reference:
            raise ValueError(not_enabled_reason(parsed.concentrator))
        reading = translate(document, meter=parsed.meter, fmt=fmt, catalogue=self._catalogue)
        self.translated += 1
        return [reading]

    async def _format_of(self, concentrator: str) -> ConcentratorFormat | None:
        now = self._clock()
        cached = self._known.get(concentrator)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        fmt = await self._lookup(concentrator)
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[concentrator] = (now, fmt)
        return fmt


def registry_lookup(registry: Registry) -> Lookup:
    """A Lookup on the device registry (None for an unknown device)."""

    async def lookup(concentrator: str) -> ConcentratorFormat | None:
        try:
            device = await registry.get_device(concentrator)
        except DeviceNotFound:
            return None
        return ConcentratorFormat(payload_format=device.payload_format, time_zone=device.payload_time_zone)

    return lookup
