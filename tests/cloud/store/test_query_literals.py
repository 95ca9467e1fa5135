"""InfluxQL literals as the store writes them: numbers without exponents, strings without raw
newlines, times inside InfluxDB's range (pure; the API tests run them against influxd)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from cloud.store.query import MAX_NS, MIN_NS, ReadingQuery, _number, quote_literal, where_clause


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_number_is_written_out_and_reads_back_exactly(value: float) -> None:
    literal = _number(value)
    assert "e" not in literal.lower() and "." in literal
    assert float(literal) == value


def test_a_newline_is_escaped_in_a_string_literal() -> None:
    assert quote_literal("a\nb'c\\") == "'a\\nb\\'c\\\\'"


def test_times_outside_influxdbs_range_are_its_ends() -> None:
    query = ReadingQuery(start=datetime(1, 1, 1, tzinfo=UTC), end=datetime(9999, 12, 31, tzinfo=UTC))
    assert where_clause(query) == f"time >= {MIN_NS} AND time <= {MAX_NS}"
