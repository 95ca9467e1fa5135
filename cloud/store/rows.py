"""Rebuild OMDP MeterReadings from InfluxDB result rows (pure).

Rows come from ``SELECT *`` with ``epoch=ns``: a ``time`` column in integer nanoseconds, the
``meter`` tag, and every field key of the measurement (null where a point lacks it). A row
without a ``reading_id`` has the id derived from its meter and time; a row with an ``rk`` has
its meter class there and the implied units where it names none (``cloud.store.schema``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from broker.schemas import (
    ClockState,
    MeterIndividual,
    MeterReading,
    OperationalPropertyRef,
    PhysicalMeterType,
    PropertyValue,
)
from cloud.store import schema
from cloud.store.line_protocol import from_ns

log = logging.getLogger(__name__)

# What rebuilding a reading from a malformed row raises; such a row is logged and skipped.
ROW_PROBLEMS = (ValueError, TypeError, OverflowError, IndexError, AttributeError)


class Layout:
    """Which column holds what, worked out once per result series."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.index = {name: i for i, name in enumerate(columns)}
        self.properties: dict[str, dict[str, int]] = {}
        for i, name in enumerate(columns):
            if name in ("time", schema.METER_TAG) or name in schema.META_FIELDS:
                continue
            pid, suffix = schema.split_field(name)
            self.properties.setdefault(pid, {})[suffix] = i

    def get(self, row: Sequence[Any], name: str) -> Any:
        i = self.index.get(name)
        return None if i is None else row[i]


def iter_readings(columns: Sequence[str], values: Sequence[Sequence[Any]]) -> Iterator[MeterReading]:
    """MeterReadings for the rows of one result series; a malformed row is logged and skipped."""
    layout = Layout(columns)
    for row in values:
        reading = reading_or_none(layout, row)
        if reading is not None:
            yield reading


def reading_or_none(layout: Layout, row: Sequence[Any]) -> MeterReading | None:
    """The MeterReading of one row (the reference rebuild), or None, logged, if it makes none."""
    try:
        return _reading(layout, row)
    except ROW_PROBLEMS as exc:
        log.warning("skipping a stored row that does not make a MeterReading (%s): %.200r", exc, row)
        return None


def _reading(layout: Layout, row: Sequence[Any]) -> MeterReading:
    stamp = int(layout.get(row, "time"))
    reading_time = from_ns(stamp)
    meter = layout.get(row, schema.METER_TAG)
    reading_id = layout.get(row, schema.READING_ID)
    key = layout.get(row, schema.READING_KEY)
    lean = key is not None  # units implied (a full point written before the lean layout has no key)
    values: list[PropertyValue] = []
    for pid, cols in layout.properties.items():
        number = row[cols[""]] if "" in cols else None
        text = row[cols[schema.TEXT_SUFFIX]] if schema.TEXT_SUFFIX in cols else None
        if number is None and text is None:
            continue
        unit = schema.stored_unit(pid, row[cols[schema.UNIT_SUFFIX]] if schema.UNIT_SUFFIX in cols else None,
                                  lean=lean)
        date = row[cols[schema.DATE_SUFFIX]] if schema.DATE_SUFFIX in cols else None
        values.append(PropertyValue(
            unit=unit,
            date=reading_time if date is None else from_ns(int(date)),
            numericalValue=None if number is None else float(number),
            textValue=None if number is not None else str(text),
            operationalPropertyDefinition=OperationalPropertyRef(propertyId=pid),
        ))
    meter_class = layout.get(row, schema.METER_CLASS) if key is None else schema.class_of_key(int(key))
    individual = MeterIndividual(
        meterIndividualId=meter,
        physicalMeterType=None if meter_class is None else PhysicalMeterType(physicalMeterClass=meter_class),
    )
    sequence = layout.get(row, schema.SEQUENCE)
    return MeterReading(
        meterReadingIdentifier=uuid.UUID(schema.derived_id(meter, stamp) if reading_id is None else reading_id),
        readingTime=reading_time,
        sequenceNumber=None if sequence is None else int(sequence),
        faultCode=layout.get(row, schema.FAULT_CODE),
        propertyValues=values,
        meterIndividual=individual,
        historical=bool(layout.get(row, schema.HISTORICAL)),
        clock=_clock(layout, row),
    )


def _clock(layout: Layout, row: Sequence[Any]) -> ClockState | None:
    """The clock state of a reading stamped before its concentrator's first time sync, if it was."""
    free = layout.get(row, schema.CLOCK_FREE_RUNNING)
    if free is None:
        return None
    offset = layout.get(row, schema.CLOCK_LAST_OFFSET)
    return ClockState(synchronised=False, freeRunningSeconds=float(free),
                      lastOffsetSeconds=None if offset is None else float(offset))

