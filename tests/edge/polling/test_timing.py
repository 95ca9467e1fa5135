"""Bounds of the poller's pure timing: aligned ticks and jitter."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.polling.timing import jitter_delay, next_tick

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


def test_nonsense_jitter_is_refused() -> None:
    with pytest.raises(ValueError):
        jitter_delay(1.0, 1.5, 0.5)
    with pytest.raises(ValueError):
        jitter_delay(1.0, 0.5, 2.0)
