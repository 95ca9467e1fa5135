"""Pure conversion of COSEM values (with DLMS units) into OMDP PropertyValues and MeterReadings."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from broker.lean import MeterIndividual, MeterReading, OperationalPropertyRef, PropertyValue

if TYPE_CHECKING:
    from devices.profiles.lean import PropertyMapping

# DLMS/COSEM unit enumeration (IEC 62056-62) for the units meters here report.
DLMS_UNITS: dict[int, str] = {
    27: "W", 28: "VA", 29: "var", 30: "Wh", 31: "VAh", 32: "varh", 33: "A", 35: "V", 44: "Hz",
    13: "m3", 14: "m3",
}

# (from, to) -> factor; identical units need no entry.
_FACTORS: dict[tuple[str, str], float] = {
    ("Wh", "kWh"): 1e-3, ("kWh", "Wh"): 1e3, ("Wh", "MWh"): 1e-6,
    ("W", "kW"): 1e-3, ("kW", "W"): 1e3,
    ("varh", "kvarh"): 1e-3, ("var", "kvar"): 1e-3,
    ("VAh", "kVAh"): 1e-3, ("VA", "kVA"): 1e-3,
    ("V", "kV"): 1e-3, ("A", "mA"): 1e3,
}


def unit_symbol(dlms_unit: int) -> str | None:
    """The symbol of a DLMS unit code, or None for codes the adapter does not know."""
    return DLMS_UNITS.get(int(dlms_unit))


def convert(value: float, source_unit: str | None, target_unit: str | None) -> float:
    """``value`` in ``source_unit`` expressed in ``target_unit``; raises ValueError if incompatible."""
    if target_unit is None or source_unit is None or source_unit == target_unit:
        return value
    factor = _FACTORS.get((source_unit, target_unit))
    if factor is None:
        raise ValueError(f"cannot convert {source_unit} to {target_unit}")
    return value * factor


def property_value(mapping: PropertyMapping, *, value: float, source_unit: str | None, at: datetime) -> PropertyValue:
    """One OMDP PropertyValue from a scaled meter value, per the profile's mapping."""
    number = convert(float(value), source_unit, mapping.unit)
    if mapping.scale is not None:
        number *= mapping.scale
    return PropertyValue(
        unit=mapping.unit or source_unit,
        date=at,
        numericalValue=round(number, 9),
        operationalPropertyDefinition=OperationalPropertyRef(
            propertyId=mapping.property_id, propertyDescription=mapping.description),
    )


def meter_reading(*, meter: MeterIndividual, reading_time: datetime, values: Iterable[PropertyValue],
                  historical: bool = False, fault_code: str | None = None) -> MeterReading:
    """An OMDP MeterReading whose id is derived from (meter, reading time), so re-reads dedupe."""
    return MeterReading(
        meterReadingIdentifier=MeterReading.derive_id(meter.meter_individual_id, reading_time),
        readingTime=reading_time,
        propertyValues=list(values),
        meterIndividual=meter,
        historical=historical,
        faultCode=fault_code,
    )
