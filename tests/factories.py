"""Readings for tests: built through the real schemas, values derived from an index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.schemas import MeterReading

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def reading(meter: str, index: int, *, start: datetime = T0, step: timedelta = timedelta(minutes=15)) -> MeterReading:
    """The ``index``-th reading of ``meter``: energy grows by index, power varies with it."""
    when = start + index * step
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(meter, when)),
        "readingTime": when.isoformat(),
        "propertyValues": [
            {"unit": "kWh", "date": when.isoformat(), "numericalValue": 1000 + index * 0.25,
             "operationalPropertyDefinition": {"propertyId": "OBIS_1.8.1"}},
            {"unit": "kW", "date": when.isoformat(), "numericalValue": (index % 17) * 0.1,
             "operationalPropertyDefinition": {"propertyId": "OBIS_1.7.0"}},
        ],
        "meterIndividual": {"meterIndividualId": meter, "physicalMeterType": {"physicalMeterClass": "ELECTRICITY"}},
    })


def payload(meter: str, index: int, **kwargs) -> bytes:
    return reading(meter, index, **kwargs).model_dump_json(by_alias=True, exclude_none=True).encode()
