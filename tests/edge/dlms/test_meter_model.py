"""The simulated meter's physics: monotonic energy, aligned load-profile captures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.dlms.meter_model import ENERGY_OBIS, PROFILE_PERIOD, MeterModel, floor_to_period

NOW = datetime(2026, 3, 10, 12, 7, 30, tzinfo=UTC)
moments = st.datetimes(min_value=datetime(2024, 1, 2), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@given(moments, st.integers(min_value=1, max_value=10**7))
def test_energy_registers_never_decrease(moment: datetime, later_s: int) -> None:
    model = MeterModel(time_source=lambda: moment)
    for obis in ENERGY_OBIS:
        assert model.energy_at(obis, moment + timedelta(seconds=later_s)) >= model.energy_at(obis, moment)


@settings(max_examples=50)
@given(st.integers(min_value=-4000, max_value=4000), st.integers(min_value=0, max_value=5000))
def test_profile_rows_are_exactly_the_aligned_captures_in_range(start_min: int, span_min: int) -> None:
    model = MeterModel(time_source=lambda: NOW, drift_epoch=NOW, history_days=2)
    start = NOW + timedelta(minutes=start_min)
    end = start + timedelta(minutes=span_min)
    rows = model.profile_rows(start, end)
    newest = floor_to_period(NOW)
    oldest = newest - timedelta(days=2) + PROFILE_PERIOD
    expected = []
    moment = oldest
    while moment <= newest:
        if start <= moment <= end:
            expected.append(moment)
        moment += PROFILE_PERIOD
    assert [r.time for r in rows] == expected


def test_clock_drift_accumulates_from_the_drift_epoch() -> None:
    clock = [NOW]
    model = MeterModel(time_source=lambda: clock[0], drift_epoch=NOW, drift_ppm=100.0)
    clock[0] = NOW + timedelta(days=1)
    assert model.meter_now() - clock[0] == timedelta(seconds=8.64)
    model.set_meter_time(clock[0])
    assert model.meter_now() == clock[0]
