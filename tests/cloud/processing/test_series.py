"""Validation, estimation and aggregation as pure functions, on the worked example and hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.processing.intervals import Interval, floor, following
from cloud.processing.rules import (CLOCK_DRIFT, FUTURE_TIME, IMPLAUSIBLE_VALUE, REGISTER_DECREASED, SPIKE, TOO_OLD,
                                    Limits, RegisterPoint, Thresholds, clock_error, validate)
from cloud.processing.series import Quality, Series
from cloud.store.line_protocol import to_ns
from tests.cloud.processing import example

D = to_ns(datetime(2026, 11, 30, tzinfo=UTC))
Q = 900 * 10**9
LIMITS = Limits(max_register=1e9, max_rate_per_hour=250.0)
NOW = D + 10 * 86_400 * 10**9


def judged(values: dict[int, float]) -> list[RegisterPoint]:
    """Each value judged in time order against the ones before, as processing does on arrival."""
    points: list[RegisterPoint] = []
    for k in values:  # in the order sent
        failed = validate(t=D + k * Q, value=values[k], limits=LIMITS, neighbours=points, exchanges=(), now=NOW,
                          thresholds=Thresholds(), clock_error_seconds=0.0)
        points = sorted([p for p in points if p.t != D + k * Q] + [RegisterPoint(t=D + k * Q, value=values[k],
                                                                                 failed=failed)], key=lambda p: p.t)
    return points


def answer(series: Series, k: int, interval: Interval) -> tuple:
    one = series.consumption(D + k * Q, following(D + k * Q, interval))
    return one.value, one.quality.value, one.rules, one.method, one.readings


def test_the_worked_example_before_and_after_the_backfill() -> None:
    first = judged(example.first_values())
    series = Series(first)
    assert {k: answer(series, k, Interval.DAY) for k in example.DAYS_FIRST} == example.DAYS_FIRST
    assert {k: answer(series, k, Interval.QUARTER_HOUR) for k in example.QUARTERS_FIRST} == example.QUARTERS_FIRST
    assert answer(series, 40, Interval.HOUR)[:4] == example.HOUR_10

    values = {**example.first_values(), **example.BACKFILL}
    after = Series(judged(values))
    assert {k: answer(after, k, Interval.DAY) for k in example.DAYS_AFTER} == example.DAYS_AFTER
    assert {k: answer(after, k, Interval.QUARTER_HOUR) for k in example.QUARTERS_AFTER} == example.QUARTERS_AFTER
    assert answer(after, 40, Interval.HOUR)[:4] == example.HOUR_10


def test_time_stamp_rules() -> None:
    def rules(t: int, error: float = 0.0) -> tuple[str, ...]:
        return validate(t=t, value=1.0, limits=LIMITS, neighbours=(), exchanges=(), now=NOW,
                        thresholds=Thresholds(), clock_error_seconds=error)

    assert rules(NOW + 301 * 10**9) == (FUTURE_TIME,)
    assert rules(NOW + 299 * 10**9) == ()
    assert rules(NOW - 401 * 86_400 * 10**9) == (TOO_OLD,)
    assert rules(NOW, error=61.0) == (CLOCK_DRIFT,)
    # A concentrator clock that ran free for a week at 100 ppm may be a minute off.
    assert clock_error(free_running_seconds=7 * 86_400, last_offset_seconds=0.5, meter_drift_seconds=None) > 60
    assert clock_error(free_running_seconds=None, last_offset_seconds=None, meter_drift_seconds=-90.0) == 90.0


def test_register_rules_and_the_meter_exchange() -> None:
    before = [RegisterPoint(t=D, value=500.0)]
    common = {"limits": LIMITS, "now": NOW, "thresholds": Thresholds(), "clock_error_seconds": 0.0}
    assert validate(t=D + Q, value=499.0, neighbours=before, exchanges=(), **common) == (REGISTER_DECREASED,)
    assert validate(t=D + Q, value=-1.0, neighbours=(), exchanges=(), **common) == (IMPLAUSIBLE_VALUE,)
    assert validate(t=D + Q, value=600.0, neighbours=before, exchanges=(), **common) == (SPIKE,)
    # 62.5 kWh in a quarter is 250 kW: the limit itself passes.
    assert validate(t=D + Q, value=562.5, neighbours=before, exchanges=(), **common) == ()
    # The new meter starts from 3 kWh: no decrease across the exchange, and it continues the old one.
    exchange = D + Q // 2
    assert validate(t=D + Q, value=3.0, neighbours=before, exchanges=(exchange,), **common) == ()
    series = Series([*before, RegisterPoint(t=D + Q, value=3.0), RegisterPoint(t=D + 2 * Q, value=4.0)],
                    exchanges=(exchange,))
    one = series.consumption(D, D + 2 * Q)
    assert (one.value, one.quality) == (1.0, Quality.MEASURED)


def test_a_gap_longer_than_estimation_reaches_is_missing() -> None:
    series = Series([RegisterPoint(t=D, value=1.0), RegisterPoint(t=D + 8 * 86_400 * 10**9, value=9.0)])
    one = series.consumption(D, D + Q)
    assert (one.value, one.quality) == (None, Quality.MISSING)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2 * 96 * 4), st.floats(0, 2.0)), min_size=2, max_size=60))
def test_quarters_add_up_to_their_day(steps: list[tuple[int, float]]) -> None:
    """Deltas telescope: a day's consumption is the sum of its quarters' whenever all are known."""
    values, total = {}, 100.0
    for offset, rise in sorted(steps):
        total += rise
        values[D + offset * Q // 4] = total
    series = Series([RegisterPoint(t=t, value=v) for t, v in sorted(values.items())])
    for day in (D, D + 86_400 * 10**9):
        whole = series.consumption(day, following(day, Interval.DAY))
        quarters = series.aggregate(day, following(day, Interval.DAY) - 1, Interval.QUARTER_HOUR)
        assert len(quarters) == 96
        if whole.value is not None and all(q.value is not None for q in quarters):
            assert abs(sum(q.value for q in quarters) - whole.value) < 1e-6
            assert whole.readings == sum(q.readings for q in quarters)


def test_month_intervals() -> None:
    t = to_ns(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert floor(t, Interval.MONTH) == to_ns(datetime(2026, 12, 1, tzinfo=UTC))
    assert following(floor(t, Interval.MONTH), Interval.MONTH) == to_ns(datetime(2027, 1, 1, tzinfo=UTC))


def test_local_days_and_months_across_clock_changes() -> None:
    """Days and months of a zone's calendar: 23 and 25 hours where its clock changes."""
    from zoneinfo import ZoneInfo

    amsterdam = ZoneInfo("Europe/Amsterdam")
    hour = 3600 * 10**9
    first = to_ns(datetime(2026, 3, 1, tzinfo=UTC)) - 24 * hour
    series = Series([RegisterPoint(t=first + h * hour, value=float(h)) for h in range(0, 24 * 250)])  # 1 kWh an hour
    spring = to_ns(datetime(2026, 3, 28, 23, tzinfo=UTC))  # local midnight of Sunday 29 March
    autumn = to_ns(datetime(2026, 10, 24, 22, tzinfo=UTC))  # local midnight of Sunday 25 October
    assert floor(spring + 5 * hour, Interval.DAY, amsterdam) == spring
    assert [c.value for c in series.aggregate(spring, spring, Interval.DAY, zone=amsterdam)] == [23.0]
    assert [c.value for c in series.aggregate(autumn, autumn, Interval.DAY, zone=amsterdam)] == [25.0]
    march = series.aggregate(spring, spring, Interval.MONTH, zone=amsterdam)
    assert march[0].start == to_ns(datetime(2026, 2, 28, 23, tzinfo=UTC)) and march[0].value == 31 * 24 - 1
    assert following(autumn, Interval.DAY, amsterdam) - autumn == 25 * hour
