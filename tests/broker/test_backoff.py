"""The one backoff policy: capped, randomised within bounds, and refusing nonsense."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.backoff import Backoff
from broker.errors import Invalid

units = st.floats(0.0, 1.0)

backoffs = st.builds(
    lambda initial, spread, factor, randomness: Backoff(initial=initial, maximum=initial * spread, factor=factor,
                                                        randomness=randomness),
    st.floats(0.001, 10.0), st.floats(1.0, 1000.0), st.floats(1.0, 10.0), st.floats(0.0, 0.99),
)


@given(backoffs, st.integers(0, 10_000), units)
def test_backoff_is_capped_and_randomised_within_bounds(backoff: Backoff, attempt: int, u: float) -> None:
    delay = backoff.delay(attempt, u)
    ceiling = backoff.ceiling(attempt)
    assert 0.0 < delay <= ceiling <= backoff.maximum
    assert delay >= ceiling * (1 - backoff.randomness) * (1 - 1e-12)


@given(backoffs, st.integers(0, 200))
def test_backoff_ceiling_grows_until_the_cap(backoff: Backoff, attempt: int) -> None:
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1)
    assert backoff.ceiling(0) == pytest.approx(backoff.initial)


def test_backoff_reaches_the_cap() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, factor=2.0, randomness=0.0)
    assert [backoff.delay(n, 0.5) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 2, "maximum": 1}, {"factor": 0.5}, {"randomness": 1.0}])
def test_nonsense_backoffs_are_refused(kwargs: dict) -> None:
    with pytest.raises(Invalid):
        Backoff(**kwargs)


def test_without_u_the_delay_is_drawn_within_the_same_bounds() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1


def test_a_negative_attempt_counts_as_the_first() -> None:
    assert Backoff(initial=0.5).ceiling(-1) == 0.5


def test_a_u_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(Invalid):
        Backoff().delay(0, 1.5)
