"""The pure interval arithmetic of completeness and backfill, and the reading ledger on SQLite."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broker.schemas import MeterIndividual, MeterReading, OperationalPropertyRef, PropertyValue
from edge.backfill import backfill_window
from edge.completeness import ReadingLedger, expected_slots, slot_of
from edge.config import BackfillSettings

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))
periods = st.sampled_from([60.0, 300.0, 900.0, 1800.0, 3600.0])


@given(moments, periods)
def test_a_moment_lies_in_its_slot(moment, period):
    slot = slot_of(moment, period)
    assert slot % period == 0
    assert slot <= moment.timestamp() < slot + period


@given(moments, periods, st.floats(min_value=0, max_value=240), st.booleans())
def test_backfill_window_starts_on_an_interval_within_limits(now, period, hours_ago, known):
    settings = BackfillSettings(initial_hours=6, max_days=2, lookahead_hours=1)
    last = now - timedelta(hours=hours_ago) if known else None
    start, end = backfill_window(last=last, now=now, period=timedelta(seconds=period), settings=settings)
    assert start.timestamp() % period == 0
    assert start >= now - timedelta(days=2, seconds=period)
    assert end == max(now, start) + timedelta(hours=1)
    if last is not None and hours_ago < 47:
        assert start <= last < start + timedelta(seconds=period)


def test_expected_slots_of_a_day():
    day = date(2026, 3, 10)
    noon = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert expected_slots(day, 900, noon) == 49
    assert expected_slots(day, 900, noon + timedelta(days=3)) == 96
    assert expected_slots(day, 900, noon - timedelta(days=1)) == 0


def reading(meter: str, at: datetime) -> MeterReading:
    value = PropertyValue(date=at, numericalValue=1.0, unit="kWh",
                          operationalPropertyDefinition=OperationalPropertyRef(propertyId="OBIS_1.8.1"))
    return MeterReading(meterReadingIdentifier=MeterReading.derive_id(meter, at), readingTime=at,
                        propertyValues=[value], meterIndividual=MeterIndividual(meterIndividualId=meter))


def test_ledger_counts_slots_once_and_survives_reopening(tmp_path):
    day0 = datetime(2026, 3, 9, tzinfo=UTC)
    ledger = ReadingLedger(tmp_path / "state.sqlite")
    times = [day0 + timedelta(minutes=15 * k) for k in range(96)]
    ledger.record([reading("m", t) for t in times[::2]], lambda _m: 900)
    ledger.record([reading("m", t + timedelta(minutes=1)) for t in times[::2]], lambda _m: 900)  # same slots
    ledger.close()
    ledger = ReadingLedger(tmp_path / "state.sqlite")
    assert ledger.present("m", day0.date(), 900) == 48
    assert ledger.report("m", period_s=900, days=2, now=day0 + timedelta(days=1, hours=1)) == {
        "2026-03-09": 0.5, "2026-03-10": 0.0}
    assert ledger.last_reading("m") == times[-2] + timedelta(minutes=1)
    assert ledger.last_slot_before("m", times[5]) == times[4]
    assert ledger.last_reading("other") is None
    ledger.close()
