"""Pure mapping from decoded Modbus point values to an OMDP MeterReading."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from broker.lean import MeterIndividual, MeterReading, OperationalPropertyRef, PhysicalMeterType, PropertyValue
from devices.modbus.register_map import Point, RegisterMap
from edge.modbus.plan import Value


def poll_instant(now: datetime, resolution: float) -> datetime:
    """``now`` in UTC rounded down to a multiple of ``resolution`` seconds since the epoch.

    A jittered or retried read is stamped with the schedule slot it belongs to, so a re-read
    of the same slot derives the same reading id (idempotent downstream).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if resolution <= 0:
        raise ValueError("resolution must be positive")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = round((now - epoch).total_seconds() * 1_000_000)
    step = max(1, round(resolution * 1_000_000))
    return epoch + timedelta(microseconds=micros - micros % step)


def property_value(point: Point, value: Value, at: datetime) -> PropertyValue:
    """One OMDP PropertyValue for a point: text for coded states, else numeric."""
    ref = OperationalPropertyRef(property_id=point.property_id, property_description=point.description)
    if point.states is not None:
        code = int(value)
        text = point.states.get(code, f"UNKNOWN({code})")
        return PropertyValue(date=at, text_value=text, operational_property=ref)
    return PropertyValue(date=at, numerical_value=float(value), unit=point.unit, operational_property=ref)


def to_meter_reading(*, register_map: RegisterMap, values: Mapping[str, Value], meter_id: str,
                     reading_time: datetime) -> MeterReading:
    """The OMDP reading of ``meter_id`` at ``reading_time`` from point values by name."""
    properties = [property_value(register_map.point(name), value, reading_time) for name, value in values.items()]
    physical = PhysicalMeterType(physical_element_name=register_map.name,
                                 physical_meter_class=register_map.meter_class)
    return MeterReading(
        meter_reading_identifier=MeterReading.derive_id(meter_id, reading_time),
        reading_time=reading_time,
        property_values=properties,
        meter_individual=MeterIndividual(meter_individual_id=meter_id, physical_meter_type=physical),
    )
