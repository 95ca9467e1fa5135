"""Pure scheduling arithmetic for the poller: aligned ticks, jitter and capped backoff.

Random numbers come in as ``u`` in [0, 1) so the functions stay pure and property-testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def next_tick(now: float, interval: float) -> float:
    """The first multiple of ``interval`` (seconds since the epoch) strictly after ``now``.

    Aligning ticks to the wall clock makes every meter with a 15-minute interval read at
    :00, :15, ... so reading times (and the ids derived from them) line up across restarts.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    tick = math.floor(now / interval) * interval + interval
    # Floating point can put floor(now / interval) one step low right at a boundary.
    while tick <= now:
        tick += interval
    return tick


def jitter_delay(interval: float, fraction: float, u: float) -> float:
    """A delay in [0, interval * fraction) that spreads meters sharing a tick over time."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("jitter fraction must be within [0, 1]")
    return interval * fraction * _unit(u)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped, randomised exponential backoff for retrying transient failures.

    Attempt ``n`` (0-based) waits ``min(cap, base * factor**n)`` scaled down by up to
    ``randomness`` so that meters failing together do not retry in lockstep.
    """

    base: float = 1.0
    cap: float = 60.0
    factor: float = 2.0
    randomness: float = 0.5

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if not 0.0 <= self.randomness < 1.0:
            raise ValueError("backoff randomness must be within [0, 1)")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry ``attempt``; never more than ``cap``."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # Compare exponents rather than computing factor**attempt, which overflows.
        if self.factor > 1 and attempt * math.log(self.factor) >= math.log(self.cap / self.base):
            return self.cap
        return min(self.cap, self.base * self.factor**attempt)

    def delay(self, attempt: int, u: float) -> float:
        """The wait before retry ``attempt``, in [(1 - randomness) * ceiling, ceiling]."""
        top = self.ceiling(attempt)
        return top * (1.0 - self.randomness * _unit(u))


def _unit(u: float) -> float:
    if not 0.0 <= u <= 1.0 or math.isnan(u):
        raise ValueError("u must be within [0, 1]")
    return u
