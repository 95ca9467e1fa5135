"""Build OMDP MeterReadings for store and API tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.schemas import MeterReading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def reading(meter: str, when: datetime, *, energy: float | None = 1.0, power: float | None = None,
            text: str | None = None, fault: str | None = None, historical: bool = False,
            unit: str | None = "kWh", sequence: int | None = None) -> MeterReading:
    """One reading with an energy register and, optionally, power and a text property."""
    values: list[dict] = []
    if energy is not None:
        values.append({"unit": unit, "date": when.isoformat(), "numericalValue": energy,
                       "operationalPropertyDefinition": {"propertyId": "OBIS_1.8.1"}})
    if power is not None:
        values.append({"unit": "kW", "date": (when - timedelta(seconds=5)).isoformat(), "numericalValue": power,
                       "operationalPropertyDefinition": {"propertyId": "OBIS_1.7.0"}})
    if text is not None:
        values.append({"date": when.isoformat(), "textValue": text,
                       "operationalPropertyDefinition": {"propertyId": "OBIS_0.0.96.13.0"}})
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(meter, when)),
        "readingTime": when.isoformat(),
        "faultCode": fault,
        "sequenceNumber": sequence,
        "propertyValues": values,
        "meterIndividual": {"meterIndividualId": meter},
        "historical": historical,
    })


def series(meters: list[str], count: int, *, start: datetime = T0, step: timedelta = timedelta(minutes=15),
           base: float = 100.0) -> list[MeterReading]:
    """``count`` readings per meter at ``step`` intervals, energy rising by 1 per step."""
    return [reading(m, start + i * step, energy=base + i, power=float(i % 7))
            for m in meters for i in range(count)]
