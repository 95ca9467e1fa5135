"""What to select from the store, and its InfluxQL (pure: quoting and statement building).

Identifiers are double-quoted and string literals single-quoted, with backslash escapes, so
no meter id or property id can change the meaning of a statement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

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


def quote_identifier(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _number(value: float) -> str:
    return repr(float(value))


def _meter_condition(meters: frozenset[str]) -> str:
    meter = quote_identifier(schema.METER_TAG)
    # Sorted so the same request gives the same statement (readable logs, cacheable).
    alternatives = " OR ".join(f"{meter} = {quote_literal(m)}" for m in sorted(meters))
    return f"({alternatives})" if alternatives else "false"


def where_clause(query: ReadingQuery) -> str:
    parts = [f"time >= {to_ns(query.start)}", f"time <= {to_ns(query.end)}"]
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
    return (
        f"SELECT count({quote_identifier(schema.READING_ID)}) FROM {quote_identifier(schema.MEASUREMENT)}"
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


def delete_statement(meter: str, stamp_ns: int) -> str:
    return (
        f"DELETE FROM {quote_identifier(schema.MEASUREMENT)} WHERE {quote_identifier(schema.METER_TAG)}"
        f" = {quote_literal(meter)} AND time >= {stamp_ns} AND time <= {stamp_ns}"
    )
