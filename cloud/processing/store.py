"""Register values and consumption aggregates in InfluxDB, next to the raw readings.

``register_value,meter=M,property=P value=1012.5,unit="kWh",quality="measured",rules="",reading_id="..." <t>``
holds each register value processing judged (measured, or failed with the rules), in the base
unit; ``consumption,meter=M,property=P,interval=day value=25.0,unit="kWh",quality="estimated",
rules="",method="linear_interpolation",readings=93i <interval start>`` holds each interval's
consumption. Both are keyed by (series, time), so writing one again overwrites it: a redelivered
message or a recomputed interval replaces what was there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.processing.intervals import Interval
from cloud.processing.rules import RegisterPoint
from cloud.processing.series import Consumption, Quality
from cloud.store.influx import InfluxStore, RowSeries
from cloud.store.line_protocol import escape_key, format_float, quote_string
from cloud.store.query import quote_identifier, quote_literal

REGISTER = "register_value"
CONSUMPTION = "consumption"


@dataclass(frozen=True, slots=True)
class NewPoint:
    """A register value to store: the point, its unit and the reading it came from."""

    point: RegisterPoint
    unit: str
    reading_id: str
    meter_class: str | None = None


@dataclass(frozen=True, slots=True)
class StoredConsumption:
    """An interval's consumption as stored."""

    start: int
    value: float | None
    unit: str | None
    quality: Quality
    rules: tuple[str, ...]
    method: str | None
    readings: int
    # START_ESTIMATED | END_ESTIMATED (series.py); None for an interval stored before it was kept.
    estimated_ends: int | None = None


class ProcessingStore:
    """Reads and writes the processing's two measurements on an InfluxStore."""

    def __init__(self, store: InfluxStore) -> None:
        self.influx = store

    async def neighbours(self, meter: str, prop: str, first: int,
                         last: int) -> tuple[RegisterPoint | None, RegisterPoint | None]:
        """The last measured value before ``first`` and the first one after ``last``."""
        where = _series(meter, prop) + " AND \"quality\" = 'measured'"
        before, after = await self.influx.query_each([
            f'SELECT "value", "rules" FROM {REGISTER} WHERE {where} AND time < {first} ORDER BY time DESC LIMIT 1',
            f'SELECT "value", "rules" FROM {REGISTER} WHERE {where} AND time > {last} ORDER BY time LIMIT 1',
        ])
        return _first(before), _first(after)

    async def window(self, meter: str, prop: str, start: int, end: int) -> list[RegisterPoint]:
        """Every value in [start, end), with the measured value just before and just after, in time order."""
        where = _series(meter, prop)
        measured = where + " AND \"quality\" = 'measured'"
        before, inside, after = await self.influx.query_each([
            f'SELECT "value", "rules" FROM {REGISTER} WHERE {measured} AND time < {start} ORDER BY time DESC LIMIT 1',
            f'SELECT "value", "rules" FROM {REGISTER} WHERE {where} AND time >= {start} AND time < {end}',
            f'SELECT "value", "rules" FROM {REGISTER} WHERE {measured} AND time >= {end} ORDER BY time LIMIT 1',
        ])
        points = list(_points(before)) + list(_points(inside)) + list(_points(after))
        points.sort(key=lambda p: p.t)
        return points

    async def month_parts(self, meter: str, prop: str, start: int,
                          end: int) -> tuple[list[RegisterPoint], list[StoredConsumption]]:
        """What a month's consumption is made of: the measured values at or around its two ends
        (up to four, in time order) and its days' stored consumption."""
        measured = _series(meter, prop) + " AND \"quality\" = 'measured'"
        statements = []
        for edge in (start, end):
            statements += [
                f'SELECT "value", "rules" FROM {REGISTER} WHERE {measured} AND time <= {edge} ORDER BY time DESC LIMIT 1',
                f'SELECT "value", "rules" FROM {REGISTER} WHERE {measured} AND time >= {edge} ORDER BY time LIMIT 1']
        *edges, days = await self.influx.query_each([*statements, self._consumption_statement(
            meter, prop, Interval.DAY, start, end)])
        points = {p.t: p for rows in edges for p in _points(rows)}
        return sorted(points.values(), key=lambda p: p.t), _stored(days)

    async def properties(self, meter: str) -> list[str]:
        """The registers processing holds values of for ``meter``."""
        (rows,) = await self.influx.query_each([
            f'SHOW TAG VALUES FROM {REGISTER} WITH KEY = "property" WHERE {quote_identifier("meter")} = '
            f"{quote_literal(meter)}"])
        return sorted({row[columns.index("value")] for columns, values in rows for row in values})

    async def stored_after(self, meter: str, prop: str, after: int, limit: int) -> list[NewPoint]:
        """Up to ``limit`` stored values (measured and failed) after ``after``, in time order, as
        they were written (unit, reading and meter class with them: to be judged again)."""
        (rows,) = await self.influx.query_each([
            f'SELECT "value", "rules", "unit", "reading_id", "meter_class" FROM {REGISTER} '
            f"WHERE {_series(meter, prop)} AND time > {after} ORDER BY time LIMIT {int(limit)}"])
        found = []
        for columns, values in rows:
            index = {name: i for i, name in enumerate(columns)}
            for row in values:
                found.append(NewPoint(point=_point(row, index["time"], index["value"], index["rules"]),
                                      unit=row[index["unit"]], reading_id=row[index["reading_id"]] or "",
                                      meter_class=row[index["meter_class"]] if "meter_class" in index else None))
        return found

    async def write(self, meter: str, prop: str, *, points: Sequence[NewPoint],
                    consumption: Iterable[tuple[Interval, Consumption]], unit: str) -> int:
        """Store the new register values and the recomputed intervals in one write."""
        tags = f"{escape_key(meter)},property={escape_key(prop)}"
        lines = []
        for new in points:
            point = new.point
            quality = "failed_validation" if point.failed else "measured"
            lines.append(f"{REGISTER},meter={tags} value={format_float(point.value)},unit={quote_string(new.unit)},"
                         f"quality={quote_string(quality)},rules={quote_string(','.join(point.failed))},"
                         f"reading_id={quote_string(new.reading_id)}"
                         f"{'' if new.meter_class is None else ',meter_class=' + quote_string(new.meter_class)} {point.t}")
        for interval, one in consumption:
            fields = [f"unit={quote_string(unit)}", f"quality={quote_string(one.quality.value)}",
                      f"rules={quote_string(','.join(one.rules))}", f"method={quote_string(one.method or '')}",
                      f"readings={one.readings}i", f"estimated_ends={one.estimated_ends}i"]
            if one.value is not None:
                fields.insert(0, f"value={format_float(one.value)}")
            lines.append(f"{CONSUMPTION},interval={interval.value},meter={tags} {','.join(fields)} {one.start}")
        return await self.influx.write_lines(lines)

    async def consumption(self, meter: str, prop: str, interval: Interval, start: int,
                          end: int) -> list[StoredConsumption]:
        """The stored intervals of ``interval`` starting in [start, end), in time order."""
        (rows,) = await self.influx.query_each([self._consumption_statement(meter, prop, interval, start, end)])
        return _stored(rows)

    @staticmethod
    def _consumption_statement(meter: str, prop: str, interval: Interval, start: int, end: int) -> str:
        return (f'SELECT "value", "unit", "quality", "rules", "method", "readings", "estimated_ends" '
                f"FROM {CONSUMPTION} "
                f"WHERE {_series(meter, prop)} AND \"interval\" = {quote_literal(interval.value)} "
                f"AND time >= {start} AND time < {end} ORDER BY time")


def _stored(rows: list[RowSeries]) -> list[StoredConsumption]:
    found = []
    for columns, values in rows:
        index = {name: i for i, name in enumerate(columns)}
        ends = index.get("estimated_ends")
        for row in values:
            quality = Quality(row[index["quality"]])
            value = row[index["value"]]
            rules = row[index["rules"]] or ""
            found.append(StoredConsumption(
                start=int(row[index["time"]]),
                value=None if quality is Quality.MISSING or value is None else float(value),
                unit=row[index["unit"]], quality=quality, rules=tuple(rules.split(",")) if rules else (),
                method=row[index["method"]] or None, readings=int(row[index["readings"]] or 0),
                estimated_ends=None if ends is None or row[ends] is None else int(row[ends])))
    return found


def _series(meter: str, prop: str) -> str:
    return f"{quote_identifier('meter')} = {quote_literal(meter)} AND {quote_identifier('property')} = {quote_literal(prop)}"


def _points(rows: list[RowSeries]) -> Iterable[RegisterPoint]:
    for columns, values in rows:
        t, value, rules = columns.index("time"), columns.index("value"), columns.index("rules")
        for row in values:
            yield _point(row, t, value, rules)


def _point(row: list[Any], t: int, value: int, rules: int) -> RegisterPoint:
    named = row[rules] or ""
    return RegisterPoint(t=int(row[t]), value=float(row[value]), failed=tuple(named.split(",")) if named else ())


def _first(rows: list[RowSeries]) -> RegisterPoint | None:
    return next(iter(_points(rows)), None)
