"""The usual shape of a meter message, as msgspec structs: decoded natively, typed, strict.

Names are as on the wire. What does not fit (an unknown key, a wrong type, a list out of
bounds) fails to decode, and ingest's fast path leaves the message to the full validator.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

class Ref(Struct, forbid_unknown_fields=True, gc=False):
    propertyId: str
    propertyDescription: str | None = None
    propertyName: str | None = None
    allowedUnits: list[str] | None = None


class Value(Struct, forbid_unknown_fields=True, gc=False):
    operationalPropertyDefinition: Ref
    date: str
    unit: str | None = None
    numericalValue: float | None = None  # JSON has no NaN or infinity; msgspec refuses 1e400
    textValue: str | None = None


class Number(Struct, forbid_unknown_fields=True, gc=False):
    """A value of the usual kind: a number, no text (a text value fails this type)."""

    operationalPropertyDefinition: Ref
    date: str
    numericalValue: float
    unit: str | None = None
    textValue: None = None


class MeterType(Struct, forbid_unknown_fields=True, gc=False):
    physicalElementId: str | None = None
    physicalElementName: str | None = None
    physicalElementVersionId: str | None = None
    physicalElementIsVirtual: bool = False
    physicalMeterClass: Literal["ELECTRICITY", "GAS", "WATER", "HEAT"] | None = None


class Meter(Struct, forbid_unknown_fields=True, gc=False):
    meterIndividualId: str
    householdId: str | None = None
    physicalMeterType: MeterType | None | UnsetType = UNSET
    physicalMeter: MeterType | None | UnsetType = UNSET


class Reading(Struct, forbid_unknown_fields=True, gc=False):
    meterReadingIdentifier: str
    readingTime: str
    propertyValues: Annotated[list[Value], Meta(min_length=1, max_length=512)]
    meterIndividual: Meter
    sequenceNumber: int | None = None
    faultCode: str | None = None
    historical: bool = False


class NumericReading(Reading, forbid_unknown_fields=True, gc=False):
    """A reading of numbers only: the usual one, decoded first."""

    propertyValues: Annotated[list[Number], Meta(min_length=1, max_length=512)]  # type: ignore[assignment]


class Batch(Struct, forbid_unknown_fields=True, gc=False):
    meterReadings: Annotated[list[Reading], Meta(min_length=1, max_length=10_000)]


class NumericBatch(Struct, forbid_unknown_fields=True, gc=False):
    meterReadings: Annotated[list[NumericReading], Meta(min_length=1, max_length=10_000)]


# Tried in order: numbers only (nearly every message), then any values.
BATCHES = (msgspec.json.Decoder(NumericBatch), msgspec.json.Decoder(Batch))
SINGLES = (msgspec.json.Decoder(NumericReading), msgspec.json.Decoder(Reading))


_BATCH_FIRST = (*BATCHES, *SINGLES)
_SINGLE_FIRST = (*SINGLES, *BATCHES)


def decode(payload: bytes | memoryview) -> list[Reading] | None:
    """The payload's readings, a ``meterReadings`` batch or a single reading; None if not usual."""
    for decoder in _BATCH_FIRST if b'"meterReadings"' in bytes(payload[:64]) else _SINGLE_FIRST:
        try:
            document = decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        return document.meterReadings if isinstance(document, Batch | NumericBatch) else [document]
    return None
