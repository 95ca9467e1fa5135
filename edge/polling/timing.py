"""Pure scheduling arithmetic for the poller: aligned ticks and jitter (its retry backoff is
:class:`broker.backoff.Backoff`, shared with everything else that retries).

Random numbers come in as ``u`` in [0, 1) so the functions stay pure and property-testable.
"""

from __future__ import annotations

import math


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


def _unit(u: float) -> float:
    if not 0.0 <= u <= 1.0 or math.isnan(u):
        raise ValueError("u must be within [0, 1]")
    return u
