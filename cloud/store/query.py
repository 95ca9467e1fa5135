"""What to select from the store, and its InfluxQL (pure: quoting and statement building).

Identifiers are double-quoted and string literals single-quoted, with backslash escapes, so
no meter id or property id can change the meaning of a statement. Numbers are written the way
InfluxQL reads them (no exponent), and times are kept within the range InfluxDB stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from cloud.store import schema
from cloud.store.line_protocol import to_ns


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    """A condition on one operational property; all given bounds must hold (AND)."""

    property_id: str
    greater_than: float | None = None
    less_than: float | None = None
    equal_to: float | None = None
    text_equal_to: str | None = None

    def __post_init__(self) -> None:
        problem = schema.property_id_problem(self.property_id)
        if problem:
            raise ValueError(problem)
        bounds = (self.greater_than, self.less_than, self.equal_to)
        if all(b is None for b in bounds) and self.text_equal_to is None:
            raise ValueError(f"filter on {self.property_id!r} gives no condition")
        if any(b is not None and not math.isfinite(b) for b in bounds):
            raise ValueError(f"filter on {self.property_id!r} has a non-finite bound")


@dataclass(frozen=True, slots=True)
class ReadingQuery:
    """Readings with start <= readingTime <= end, of the given meters (None: every meter)."""

    start: datetime
    end: datetime
    meters: frozenset[str] | None = None
    filters: tuple[PropertyFilter, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must carry a timezone")
        if self.start > self.end:
            raise ValueError("start is after end")

    @property
    def empty(self) -> bool:
        """True when no reading can match (no meter allowed), so the store need not be asked."""
        return self.meters is not None and not self.meters

    def restricted_to(self, allowed: frozenset[str] | None) -> ReadingQuery:
        """The same query seeing only ``allowed`` meters (None: no restriction)."""
        if allowed is None:
            return self
        meters = allowed if self.meters is None else self.meters & allowed
        return ReadingQuery(start=self.start, end=self.end, meters=frozenset(meters), filters=self.filters)


# The times InfluxDB stores: int64 nanoseconds short of its two sentinels (influxql MinTime, MaxTime).
MIN_NS = -(2**63) + 2
MAX_NS = 2**63 - 2


def quote_identifier(name: str) -> str:
    return '"' + _escaped(name).replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    return "'" + _escaped(value).replace("'", "\\'") + "'"


def _escaped(text: str) -> str:
    # InfluxQL ends a quoted string at a raw newline (a parse error): it reads the escape instead.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    """A finite float as an InfluxQL number literal: InfluxQL reads no exponent (``1e-07`` would
    parse as 1 followed by a duration unit), so the digits are written out, with a point (a
    number without one is an integer to InfluxQL, and may not fit 64 bits)."""
    digits = format(Decimal(repr(float(value))), "f")
    return digits if "." in digits else digits + ".0"


def _time_ns(moment: datetime) -> int:
    """``moment`` in nanoseconds, moved into InfluxDB's range: no reading is stored outside it,
    so a query bound beyond it selects the same readings as the range's end."""
    return min(max(to_ns(moment), MIN_NS), MAX_NS)


def _meter_condition(meters: frozenset[str]) -> str:
    meter = quote_identifier(schema.METER_TAG)
    # Sorted so the same request gives the same statement (readable logs, cacheable).
    alternatives = " OR ".join(f"{meter} = {quote_literal(m)}" for m in sorted(meters))
    return f"({alternatives})" if alternatives else "false"


def where_clause(query: ReadingQuery) -> str:
    parts = [f"time >= {_time_ns(query.start)}", f"time <= {_time_ns(query.end)}"]
    if query.meters is not None:
        parts.append(_meter_condition(query.meters))
    for flt in query.filters:
        value = quote_identifier(flt.property_id)
        if flt.greater_than is not None:
            parts.append(f"{value} > {_number(flt.greater_than)}")
        if flt.less_than is not None:
            parts.append(f"{value} < {_number(flt.less_than)}")
        if flt.equal_to is not None:
            parts.append(f"{value} = {_number(flt.equal_to)}")
        if flt.text_equal_to is not None:
            text = quote_identifier(flt.property_id + schema.TEXT_SUFFIX)
            parts.append(f"{text} = {quote_literal(flt.text_equal_to)}")
    return " AND ".join(parts)


def select_statement(query: ReadingQuery, *, limit: int | None = None, offset: int = 0) -> str:
    statement = f"SELECT * FROM {quote_identifier(schema.MEASUREMENT)} WHERE {where_clause(query)} ORDER BY time ASC"
    if limit is not None:
        statement += f" LIMIT {int(limit)}"
    if offset:
        statement += f" OFFSET {int(offset)}"
    return statement


def count_statement(query: ReadingQuery) -> str:
    # ``historical`` is on every point, lean or full.
    return (
        f"SELECT count({quote_identifier(schema.HISTORICAL)}) FROM {quote_identifier(schema.MEASUREMENT)}"
        f" WHERE {where_clause(query)}"
    )


def find_id_statement(reading_id: str, *, meters: frozenset[str] | None = None) -> str:
    """Locate a reading by id; restricting to ``meters`` keeps the scan to those series."""
    conditions = [] if meters is None else [_meter_condition(meters)]
    conditions.append(f"{quote_identifier(schema.READING_ID)} = {quote_literal(reading_id)}")
    return (
        f"SELECT {quote_identifier(schema.READING_ID)}, {quote_identifier(schema.METER_TAG)}"
        f" FROM {quote_identifier(schema.MEASUREMENT)} WHERE {' AND '.join(conditions)}"
    )


def find_key_statement(reading_id: str, *, meters: frozenset[str] | None = None) -> str:
    """The lean points that may be the reading with this (derived) id: those whose ``rk`` holds
    the id's first bits; the caller confirms each by deriving its id from meter and time."""
    low, high = schema.key_range(reading_id)
    key = quote_identifier(schema.READING_KEY)
    conditions = [] if meters is None else [_meter_condition(meters)]
    conditions += [f"{key} >= {low}", f"{key} < {high}"]
    return (
        f"SELECT {key}, {quote_identifier(schema.METER_TAG)} FROM {quote_identifier(schema.MEASUREMENT)}"
        f" WHERE {' AND '.join(conditions)}"
    )


def delete_statement(meter: str, stamp_ns: int) -> str:
    return (
        f"DELETE FROM {quote_identifier(schema.MEASUREMENT)} WHERE {quote_identifier(schema.METER_TAG)}"
        f" = {quote_literal(meter)} AND time >= {stamp_ns} AND time <= {stamp_ns}"
    )
