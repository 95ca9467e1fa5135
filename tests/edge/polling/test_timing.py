"""Bounds of the poller's pure timing: aligned ticks, jitter and capped backoff."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.polling.timing import Backoff, jitter_delay, next_tick

units = st.floats(0.0, 1.0)
intervals = st.floats(0.001, 86400.0)


@given(st.floats(0.0, 4e9), intervals)
def test_next_tick_is_the_next_multiple(now: float, interval: float) -> None:
    tick = next_tick(now, interval)
    assert now < tick <= now + interval * (1 + 1e-9) + 1e-6
    steps = tick / interval
    assert math.isclose(steps, round(steps), rel_tol=1e-9, abs_tol=1e-6)


@given(intervals, st.floats(0.0, 1.0), units)
def test_jitter_stays_within_its_fraction(interval: float, fraction: float, u: float) -> None:
    delay = jitter_delay(interval, fraction, u)
    assert 0.0 <= delay <= interval * fraction


backoffs = st.builds(
    lambda base, spread, factor, randomness: Backoff(base=base, cap=base * spread, factor=factor, randomness=randomness),
    st.floats(0.001, 10.0), st.floats(1.0, 1000.0), st.floats(1.0, 10.0), st.floats(0.0, 0.99),
)


@given(backoffs, st.integers(0, 10_000), units)
def test_backoff_is_capped_and_randomised_within_bounds(backoff: Backoff, attempt: int, u: float) -> None:
    delay = backoff.delay(attempt, u)
    ceiling = backoff.ceiling(attempt)
    assert 0.0 < delay <= ceiling <= backoff.cap
    assert delay >= ceiling * (1 - backoff.randomness) * (1 - 1e-12)


@given(backoffs, st.integers(0, 200))
def test_backoff_ceiling_grows_until_the_cap(backoff: Backoff, attempt: int) -> None:
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1)
    assert backoff.ceiling(0) == pytest.approx(backoff.base)


def test_backoff_reaches_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=1.0, factor=2.0, randomness=0.0)
    assert [backoff.delay(n, 0.5) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 2, "cap": 1}, {"factor": 0.5}, {"randomness": 1.0}])
def test_nonsense_backoffs_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_nonsense_jitter_is_refused() -> None:
    with pytest.raises(ValueError):
        jitter_delay(1.0, 1.5, 0.5)
    with pytest.raises(ValueError):
        jitter_delay(1.0, 0.5, 2.0)
