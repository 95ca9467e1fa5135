"""OMDP MeterReading and PropertyValue, as they travel over MQTT.

Field names follow the OMDP data model (camelCase on the wire). Where the OMDP material is
inconsistent, the resolution is written in ``docs/OMDP.md``: ``physicalMeterType`` is the
name (``physicalMeter`` is accepted on input), ``propertyDescription`` is the name
(``propertyName`` is accepted on input), identifiers are real UUIDs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import pydantic_core
from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from broker.lean.reading import METER_ID_PATTERN, READING_ID_NAMESPACE, derive_reading_id
from broker.lean.reading import require_tz as _require_tz

__all__ = ["READING_ID_NAMESPACE", "AwareDatetime", "ClockState", "MeterIndividual", "MeterReading",
           "MeterReadingBatch", "OperationalPropertyRef", "PhysicalMeterType", "PropertyValue", "ReadingInterval",
           "ValueStatistics", "parse_meter_message", "parse_reading_batch"]


AwareDatetime = Annotated[datetime, AfterValidator(_require_tz)]


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class OperationalPropertyRef(_Wire):
    """The operational property a value is of, as carried inside a PropertyValue."""

    property_id: str = Field(alias="propertyId", min_length=1, max_length=128)
    property_description: str | None = Field(
        default=None,
        validation_alias=AliasChoices("propertyDescription", "propertyName"),
        serialization_alias="propertyDescription",
    )
    allowed_units: list[str] | None = Field(default=None, alias="allowedUnits")


class ValueStatistics(_Wire):
    """Gridwire extension: a numeric property over the reading's ``interval`` (an aggregated
    reading carries its last value as ``numericalValue`` and these beside it)."""

    mean: float = Field(allow_inf_nan=False)
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    count: int = Field(ge=1)


class ReadingInterval(_Wire):
    """Gridwire extension: the span an aggregated reading summarises (from its first to its last sample)."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> ReadingInterval:
        if self.end < self.start:
            raise ValueError("interval end is before its start")
        return self

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class PropertyValue(_Wire):
    """One measured value: numeric or text, with unit, time and operational property."""

    unit: str | None = Field(default=None, max_length=32)
    date: AwareDatetime
    numerical_value: float | None = Field(default=None, alias="numericalValue", allow_inf_nan=False)
    text_value: str | None = Field(default=None, alias="textValue", max_length=1024)
    operational_property: OperationalPropertyRef = Field(alias="operationalPropertyDefinition")
    statistics: ValueStatistics | None = None

    @model_validator(mode="after")
    def _one_value(self) -> PropertyValue:
        if (self.numerical_value is None) == (self.text_value is None):
            raise ValueError("exactly one of numericalValue and textValue must be given")
        return self

    @property
    def property_id(self) -> str:
        return self.operational_property.property_id


class PhysicalMeterType(_Wire):
    physical_element_id: uuid.UUID | None = Field(default=None, alias="physicalElementId")
    physical_element_name: str | None = Field(default=None, alias="physicalElementName")
    physical_element_version_id: str | None = Field(default=None, alias="physicalElementVersionId")
    physical_element_is_virtual: bool = Field(default=False, alias="physicalElementIsVirtual")
    physical_meter_class: Literal["ELECTRICITY", "GAS", "WATER", "HEAT"] | None = Field(
        default=None, alias="physicalMeterClass"
    )


class MeterIndividual(_Wire):
    meter_individual_id: str = Field(alias="meterIndividualId", min_length=1, max_length=128, pattern=METER_ID_PATTERN)
    household_id: str | None = Field(default=None, alias="householdId")
    physical_meter_type: PhysicalMeterType | None = Field(
        default=None,
        validation_alias=AliasChoices("physicalMeterType", "physicalMeter"),
        serialization_alias="physicalMeterType",
    )


class ClockState(_Wire):
    """Gridwire extension: the concentrator's clock as it stamped a reading, given while that
    clock has not been compared with the cloud's since the concentrator started (it booted
    without network): free-running for ``freeRunningSeconds``; at its last comparison, before
    this start, it was ``lastOffsetSeconds`` behind the cloud (cloud minus local) at ``lastSyncedAt``.
    A reading without it was stamped by a clock compared with the cloud's (or by the meter's)."""

    synchronised: bool = False
    free_running_seconds: float = Field(alias="freeRunningSeconds", ge=0)
    last_offset_seconds: float | None = Field(default=None, alias="lastOffsetSeconds", allow_inf_nan=False)
    last_synced_at: AwareDatetime | None = Field(default=None, alias="lastSyncedAt")


class MeterReading(_Wire):
    """One OMDP MeterReading: a meter's values at one reading time."""

    meter_reading_identifier: uuid.UUID = Field(alias="meterReadingIdentifier")
    reading_time: AwareDatetime = Field(alias="readingTime")
    sequence_number: int | None = Field(default=None, alias="sequenceNumber")
    fault_code: str | None = Field(default=None, alias="faultCode", max_length=64)
    property_values: list[PropertyValue] = Field(alias="propertyValues", min_length=1, max_length=512)
    meter_individual: MeterIndividual = Field(alias="meterIndividual")
    # Gridwire extension: True for readings recovered from the meter's load profile (backfill).
    historical: bool = False
    # Gridwire extension: set on readings the concentrator stamped before its first time sync.
    clock: ClockState | None = None
    # Gridwire extension: set on an aggregated reading (a P1 meter's 15-minute summary).
    interval: ReadingInterval | None = None

    @property
    def meter_id(self) -> str:
        return self.meter_individual.meter_individual_id

    @staticmethod
    def derive_id(meter_id: str, reading_time: datetime) -> uuid.UUID:
        """The reading id for a meter at a time; the same inputs always give the same id."""
        return derive_reading_id(meter_id, reading_time)

    def to_wire(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class MeterReadingBatch(_Wire):
    """Several readings in one MQTT message (the concentrator batches to cut per-message cost)."""

    meter_readings: list[MeterReading] = Field(alias="meterReadings", min_length=1, max_length=10_000)

    def to_wire(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_BATCH = TypeAdapter(MeterReadingBatch)
_SINGLE = TypeAdapter(MeterReading)


def parse_meter_message(payload: bytes | str) -> list[MeterReading]:
    """Parse an MQTT payload holding one MeterReading or a batch.

    Raises ``ValueError`` (``pydantic.ValidationError`` is one) naming what is wrong.
    """
    try:
        # pydantic-core's parser: several times faster than json.loads, and it refuses lone
        # surrogates (json.loads lets them through, and they cannot be written as UTF-8).
        document = pydantic_core.from_json(payload)
    except ValueError as exc:
        raise ValueError(f"payload is not JSON: {exc}") from exc
    if isinstance(document, dict) and "meterReadings" in document:
        return list(_BATCH.validate_python(document).meter_readings)
    return [_SINGLE.validate_python(document)]


def parse_reading_batch(payload: bytes | str) -> list[tuple[object, MeterReading | ValueError]]:
    """A live batch (``concentrator/{cid}/batch/meterReading``) reading by reading: each item of
    its ``meterReadings`` with its MeterReading, or the ValueError saying why it is none, so one
    bad reading does not take the others with it. ValueError if the payload is no batch at all."""
    try:
        document = pydantic_core.from_json(payload)
    except ValueError as exc:
        raise ValueError(f"payload is not JSON: {exc}") from exc
    items = document.get("meterReadings") if isinstance(document, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= 10_000:
        raise ValueError('a live batch is {"meterReadings": [1 to 10,000 MeterReadings]}')
    out: list[tuple[object, MeterReading | ValueError]] = []
    for item in items:
        try:
            out.append((item, _SINGLE.validate_python(item)))
        except ValueError as exc:
            out.append((item, exc))
    return out
