"""The NTP math, the filter and the meter clock policy: pure, property-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from edge.timesync import ClockFilter, check_meter, compute, decide

seconds = st.floats(min_value=0, max_value=5, allow_nan=False)
skews = st.floats(min_value=-3600, max_value=3600, allow_nan=False)
EPS = 1e-6  # float rounding at POSIX-seconds magnitude


def exchange(t1: float, skew: float, up: float, processing: float, down: float) -> tuple[float, float, float, float]:
    """The four stamps of one exchange when the reference clock reads local + ``skew``."""
    t2 = t1 + up + skew
    t3 = t2 + processing
    t4 = t3 - skew + down
    return t1, t2, t3, t4


@given(t1=st.floats(1.5e9, 2.5e9), skew=skews, up=seconds, processing=seconds, down=seconds)
def test_known_skew_is_recovered_within_half_the_delay(t1: float, skew: float, up: float, processing: float,
                                                       down: float) -> None:
    sample = compute(*exchange(t1, skew, up, processing, down))
    assert abs(sample.delay - (up + down)) < EPS
    assert abs(sample.offset - skew) <= sample.delay / 2 + EPS


@given(t1=st.floats(1.5e9, 2.5e9), skew=st.floats(-1, 1), delay=seconds, processing=seconds)
def test_symmetric_paths_give_the_exact_skew(t1: float, skew: float, delay: float, processing: float) -> None:
    sample = compute(*exchange(t1, skew, delay / 2, processing, delay / 2))
    assert abs(sample.offset - skew) < EPS


@given(skew=skews, paths=st.lists(st.tuples(seconds, seconds, seconds), min_size=1, max_size=20),
       size=st.integers(1, 8))
def test_filter_keeps_the_tightest_of_the_last_n(skew: float, paths: list[tuple[float, float, float]],
                                                 size: int) -> None:
    clock_filter = ClockFilter(size)
    samples = []
    for n, (up, processing, down) in enumerate(paths):
        sample = compute(*exchange(1.7e9 + 60 * n, skew, up, processing, down))
        clock_filter.add(sample)
        samples.append(sample)
    best = clock_filter.estimate
    assert best is not None and len(clock_filter) == min(size, len(paths))
    assert best.delay == min(s.delay for s in samples[-size:])
    assert abs(best.offset - skew) <= best.delay / 2 + EPS


def test_negative_delay_sample_is_discarded() -> None:
    clock_filter = ClockFilter()
    clock_filter.add(compute(100.0, 100.0, 100.0, 99.0))  # t4 before t1: a clock stepped back
    assert clock_filter.estimate is None


@given(drift=st.floats(-86400, 86400, allow_nan=False), threshold=st.floats(0, 600, allow_nan=False))
def test_decide_sets_the_clock_only_beyond_the_threshold(drift: float, threshold: float) -> None:
    reference = datetime(2025, 6, 1, 12, tzinfo=UTC)
    meter = reference + timedelta(seconds=drift)
    decision = decide(meter, reference, timedelta(seconds=threshold))
    measured = decision.drift_seconds
    assert abs(measured - drift) < 1e-5
    assert decision.set_clock == (abs(measured) > timedelta(seconds=threshold).total_seconds())


class FakeMeterClock:
    """A meter clock running ``drift`` seconds ahead of the reference, settable like the DLMS clock."""

    def __init__(self, reference: datetime, drift: float) -> None:
        self.reference = reference
        self.drift = timedelta(seconds=drift)
        self.sets: list[datetime] = []

    async def read_clock(self) -> datetime:
        return self.reference + self.drift

    async def set_clock(self, value: datetime) -> None:
        self.sets.append(value)
        self.drift = value - self.reference


async def test_check_meter_sets_a_drifted_clock_and_reports() -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    meter = FakeMeterClock(now, drift=-42.5)
    report = await check_meter("m-1", meter, reference=lambda: now, threshold=timedelta(seconds=5))
    assert report.corrected and report.drift_seconds == -42.5 and report.measured_at == now
    assert meter.sets == [now]
    again = await check_meter("m-1", meter, reference=lambda: now, threshold=timedelta(seconds=5))
    assert not again.corrected and again.drift_seconds == 0 and meter.sets == [now]
    slight = FakeMeterClock(now, drift=3.0)
    assert not (await check_meter("m-2", slight, reference=lambda: now, threshold=timedelta(seconds=5))).corrected
    assert slight.sets == []
