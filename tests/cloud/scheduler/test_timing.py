"""Next-run computation: strictly after now, on the trigger's grid, DST-safe, solar offsets exact."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.scheduler.timing import (
    DailyTrigger,
    IntervalTrigger,
    MissedRunPolicy,
    OnceTrigger,
    SolarEvent,
    SolarTrigger,
    next_run,
    parse_trigger,
    plan_due,
    solar_event,
    wall_to_utc,
)

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1),
                        timezones=st.just(UTC))
zones = st.sampled_from(["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"])
wall_times = st.times().map(lambda t: t.replace(microsecond=0))


@given(anchor=instants, every=st.integers(1, 7 * 86400), now=instants)
def test_interval_next_is_after_now_and_on_grid(anchor: datetime, every: int, now: datetime) -> None:
    trigger = IntervalTrigger(anchor=anchor, every_seconds=every)
    nxt = next_run(trigger, now)
    assert nxt is not None and nxt > now
    assert (nxt - anchor) % timedelta(seconds=every) == timedelta(0)
    # It is the first grid point after now: one step earlier is not after now (or before the anchor).
    assert nxt == anchor or nxt - timedelta(seconds=every) <= now


@given(times=st.lists(wall_times, min_size=1, max_size=4), zone=zones, now=instants,
       weekdays=st.frozensets(st.integers(1, 7), min_size=1))
def test_daily_next_is_after_now_at_a_listed_wall_time(times: list[time], zone: str, now: datetime,
                                                        weekdays: frozenset[int]) -> None:
    trigger = DailyTrigger(times=tuple(times), timezone=zone, weekdays=weekdays)
    nxt = next_run(trigger, now)
    assert nxt is not None and now < nxt <= now + timedelta(days=8)
    local = nxt.astimezone(ZoneInfo(zone))
    # Either exactly a listed wall time, or a listed time that fell into a DST gap (shifted forward).
    assert local.time() in trigger.times or any(
        wall_to_utc(local.date(), t, ZoneInfo(zone)) == nxt for t in trigger.times)
    # No listed time in this zone fires between now and nxt (nothing skipped).
    probe = next_run(trigger, nxt - timedelta(microseconds=1))
    assert probe == nxt


@given(times=st.lists(wall_times, min_size=1, max_size=3), zone=zones, start=instants)
@settings(max_examples=50)
def test_daily_runs_once_per_listed_time_per_day_across_dst(times: list[time], zone: str, start: datetime) -> None:
    trigger = DailyTrigger(times=tuple(times), timezone=zone)
    runs, now = [], start
    for _ in range(3 * len(trigger.times)):
        nxt = next_run(trigger, now)
        assert nxt is not None and nxt > now
        runs.append(nxt)
        now = nxt
    assert len(set(runs)) == len(runs)
    # Never two runs on one local day beyond the number of listed times.
    per_day: dict[date, int] = {}
    for run in runs:
        day = run.astimezone(ZoneInfo(zone)).date()
        per_day[day] = per_day.get(day, 0) + 1
    assert max(per_day.values()) <= len(trigger.times)


def test_dst_gap_runs_shifted_and_fold_runs_once() -> None:
    ams = ZoneInfo("Europe/Amsterdam")
    trigger = DailyTrigger(times=(time(2, 30),), timezone="Europe/Amsterdam")
    # 2025-03-30: clocks jump from 02:00 to 03:00; 02:30 does not exist and runs at 03:30 CEST.
    spring = next_run(trigger, datetime(2025, 3, 29, 12, tzinfo=UTC))
    assert spring == datetime(2025, 3, 30, 3, 30, tzinfo=ams).astimezone(UTC)
    assert spring == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    # 2025-10-26: 02:30 happens twice; only the first (CEST, 00:30 UTC) runs, the next is a day later.
    autumn = next_run(trigger, datetime(2025, 10, 25, 12, tzinfo=UTC))
    assert autumn == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    assert next_run(trigger, autumn) == datetime(2025, 10, 27, 1, 30, tzinfo=UTC)


def test_once_fires_once() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    trigger = OnceTrigger(at=at)
    assert next_run(trigger, at - timedelta(seconds=1)) == at
    assert next_run(trigger, at) is None


@given(lat=st.floats(-60, 60), lon=st.floats(-180, 180), offset=st.integers(-3 * 3600, 3 * 3600),
       event=st.sampled_from(list(SolarEvent)), now=instants)
@settings(max_examples=60)
def test_solar_next_is_event_plus_offset(lat: float, lon: float, offset: int, event: SolarEvent,
                                         now: datetime) -> None:
    trigger = SolarTrigger(event=event, latitude=lat, longitude=lon, offset_seconds=offset)
    base = SolarTrigger(event=event, latitude=lat, longitude=lon)
    nxt = next_run(trigger, now)
    assert nxt is not None and nxt > now
    # The same instant is astral's event on some day, shifted by exactly the offset.
    days = [nxt.date() + timedelta(days=d) for d in (-1, 0, 1)]
    assert any(solar_event(base, d) == nxt - timedelta(seconds=offset) for d in days)
    # And no earlier event of this trigger lies between now and nxt.
    assert next_run(trigger, nxt - timedelta(seconds=1)) == nxt


def test_solar_polar_night_skips_to_the_first_sunrise() -> None:
    tromso = SolarTrigger(event=SolarEvent.SUNRISE, latitude=69.65, longitude=18.96)
    nxt = next_run(tromso, datetime(2025, 12, 1, tzinfo=UTC))
    assert nxt is not None and datetime(2026, 1, 10, tzinfo=UTC) < nxt < datetime(2026, 1, 25, tzinfo=UTC)


@given(late=st.integers(0, 10 * 86400), grace=st.integers(0, 3600), policy=st.sampled_from(list(MissedRunPolicy)))
def test_plan_due_runs_on_time_and_follows_policy_when_late(late: int, grace: int, policy: MissedRunPolicy) -> None:
    anchor = datetime(2025, 1, 1, tzinfo=UTC)
    trigger = IntervalTrigger(anchor=anchor, every_seconds=600)
    due = anchor + timedelta(hours=1)
    now = due + timedelta(seconds=late)
    run, following = plan_due(trigger, due=due, now=now, policy=policy, grace=timedelta(seconds=grace))
    assert run == (late <= grace or policy is MissedRunPolicy.RUN_ONCE)
    assert following is not None and now < following <= now + timedelta(seconds=600)


def test_trigger_json_round_trip_and_validation() -> None:
    trigger = DailyTrigger(times=(time(6), time(18, 30)), timezone="Europe/Amsterdam", weekdays=frozenset({1, 5}))
    assert parse_trigger(trigger.model_dump(mode="json", by_alias=True)) == trigger
    with pytest.raises(ValueError, match="unknown time zone"):
        DailyTrigger(times=(time(6),), timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        IntervalTrigger(anchor=datetime(2025, 1, 1), every_seconds=60)  # naive
