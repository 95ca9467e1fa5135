"""OMDP MeterReading and its parts, lean (the contract's pydantic models: broker/schemas/meter_reading.py).

The concentrator builds one of these per reading and serialises it; the reading id's derivation
(:func:`derive_reading_id`) is defined here once and used by both sides.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from broker.lean.base import (ContractError, Field, Lean, aware_datetime, boolean, constant, identifier, integer,
                              list_of, load_json, model, number, optional, text)

# Namespace for reading ids derived from (meter, reading time): a re-read or a redelivery of
# the same reading carries the same id, which is what makes writes idempotent end to end.
READING_ID_NAMESPACE = uuid.UUID("6f1d8c3e-5b0a-4c57-9a53-2f1f5d0e7a11")
METER_ID_PATTERN = r"^[^/+#\x00]+$"
MAX_BATCH = 10_000


def require_tz(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timezone information must be included")
    return value


def derive_reading_id(meter_id: str, reading_time: datetime) -> uuid.UUID:
    """The reading id for a meter at a time; the same inputs always give the same id."""
    # In UTC, so the same instant written with another offset (P1's local time, DLMS's
    # deviation, a UTC backfill) gives the same id.
    instant = require_tz(reading_time).astimezone(UTC)
    return uuid.uuid5(READING_ID_NAMESPACE, f"{meter_id}|{instant.isoformat()}")


class OperationalPropertyRef(Lean):
    """The operational property a value is of, as carried inside a PropertyValue."""

    frozen = True
    fields = (
        Field("property_id", text(min_length=1, max_length=128), alias="propertyId"),
        Field("property_description", optional(text()), alias="propertyDescription", default=None,
              accepted=("propertyDescription", "propertyName")),
        Field("allowed_units", optional(list_of(text())), alias="allowedUnits", default=None),
    )


class ValueStatistics(Lean):
    """A numeric property over the reading's ``interval``."""

    frozen = True
    fields = (
        Field("mean", number(allow_inf_nan=False)),
        Field("min", number(allow_inf_nan=False)),
        Field("max", number(allow_inf_nan=False)),
        Field("count", integer(ge=1)),
    )


class ReadingInterval(Lean):
    """The span an aggregated reading summarises (from its first to its last sample)."""

    frozen = True
    fields = (Field("start", aware_datetime), Field("end", aware_datetime))

    def _after(self) -> None:
        if self.end < self.start:
            raise ValueError("interval end is before its start")

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class PropertyValue(Lean):
    """One measured value: numeric or text, with unit, time and operational property."""

    frozen = True
    fields = (
        Field("unit", optional(text(max_length=32)), default=None),
        Field("date", aware_datetime),
        Field("numerical_value", optional(number(allow_inf_nan=False)), alias="numericalValue", default=None),
        Field("text_value", optional(text(max_length=1024)), alias="textValue", default=None),
        Field("operational_property", model(OperationalPropertyRef), alias="operationalPropertyDefinition"),
        Field("statistics", optional(model(ValueStatistics)), default=None),
    )

    def _after(self) -> None:
        if (self.numerical_value is None) == (self.text_value is None):
            raise ValueError("exactly one of numericalValue and textValue must be given")

    @property
    def property_id(self) -> str:
        return self.operational_property.property_id


class PhysicalMeterType(Lean):
    frozen = True
    fields = (
        Field("physical_element_id", optional(identifier), alias="physicalElementId", default=None),
        Field("physical_element_name", optional(text()), alias="physicalElementName", default=None),
        Field("physical_element_version_id", optional(text()), alias="physicalElementVersionId", default=None),
        Field("physical_element_is_virtual", boolean, alias="physicalElementIsVirtual", default=False),
        Field("physical_meter_class", optional(constant("ELECTRICITY", "GAS", "WATER", "HEAT")),
              alias="physicalMeterClass", default=None),
    )


class MeterIndividual(Lean):
    frozen = True
    fields = (
        Field("meter_individual_id", text(min_length=1, max_length=128, pattern=METER_ID_PATTERN),
              alias="meterIndividualId"),
        Field("household_id", optional(text()), alias="householdId", default=None),
        Field("physical_meter_type", optional(model(PhysicalMeterType)), alias="physicalMeterType", default=None,
              accepted=("physicalMeterType", "physicalMeter")),
    )


class ClockState(Lean):
    """The concentrator's clock as it stamped a reading, while not compared with the cloud's since start."""

    frozen = True
    fields = (
        Field("synchronised", boolean, default=False),
        Field("free_running_seconds", number(ge=0), alias="freeRunningSeconds"),
        Field("last_offset_seconds", optional(number(allow_inf_nan=False)), alias="lastOffsetSeconds", default=None),
        Field("last_synced_at", optional(aware_datetime), alias="lastSyncedAt", default=None),
    )


class MeterReading(Lean):
    """One OMDP MeterReading: a meter's values at one reading time."""

    frozen = True
    fields = (
        Field("meter_reading_identifier", identifier, alias="meterReadingIdentifier"),
        Field("reading_time", aware_datetime, alias="readingTime"),
        Field("sequence_number", optional(integer()), alias="sequenceNumber", default=None),
        Field("fault_code", optional(text(max_length=64)), alias="faultCode", default=None),
        Field("property_values", list_of(model(PropertyValue), min_length=1, max_length=512), alias="propertyValues"),
        Field("meter_individual", model(MeterIndividual), alias="meterIndividual"),
        Field("historical", boolean, default=False),
        Field("clock", optional(model(ClockState)), default=None),
        Field("interval", optional(model(ReadingInterval)), default=None),
    )

    @property
    def meter_id(self) -> str:
        return self.meter_individual.meter_individual_id

    derive_id = staticmethod(derive_reading_id)

    def to_wire(self) -> dict:
        return self.dump(exclude_none=True)

    def wire_bytes(self) -> bytes:
        """The reading as the concentrator publishes it (``model_dump_json(by_alias=True, exclude_none=True)``)."""
        return self.dump_json(exclude_none=True)


class MeterReadingBatch(Lean):
    """Several readings in one MQTT message."""

    frozen = True
    fields = (Field("meter_readings", list_of(model(MeterReading), min_length=1, max_length=MAX_BATCH),
                    alias="meterReadings"),)

    def to_wire(self) -> dict:
        return self.dump(exclude_none=True)


def _document(payload: bytes | str) -> Any:
    try:
        return load_json(payload)
    except ValueError as exc:
        raise ValueError(f"payload is not JSON: {exc}") from exc


def parse_meter_message(payload: bytes | str) -> list[MeterReading]:
    """An MQTT payload holding one MeterReading or a batch; ContractError (a ValueError) naming what is wrong."""
    document = _document(payload)
    if isinstance(document, dict) and "meterReadings" in document:
        return list(MeterReadingBatch.validate(document).meter_readings)
    return [MeterReading.validate(document)]


def parse_reading_batch(payload: bytes | str) -> list[tuple[object, MeterReading | ValueError]]:
    """A live batch reading by reading: each item with its MeterReading or why it is none."""
    document = _document(payload)
    items = document.get("meterReadings") if isinstance(document, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise ValueError('a live batch is {"meterReadings": [1 to 10,000 MeterReadings]}')
    out: list[tuple[object, MeterReading | ValueError]] = []
    for item in items:
        try:
            out.append((item, MeterReading.validate(item)))
        except ContractError as exc:
            out.append((item, exc))
    return out
