"""The one backoff policy for every retry in Gridwire: capped, randomised and exponential.

Pure arithmetic: the random number comes in as ``u`` in [0, 1], so the policy can be
property-tested. Edge (meter polling, P1 ports) and cloud (ingest writes, core retries,
webhooks, broker reconnects) share it, so it sits at the bottom, in ``broker/``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from broker.errors import Invalid


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before retry ``attempt`` (0-based).

    Attempt ``n`` waits ``min(maximum, initial * factor**n)``, scaled down by up to
    ``randomness`` so that parties failing together do not retry in lockstep (0.5, the
    default, spreads the waits over the upper half of the ceiling).
    """

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    randomness: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise Invalid(f"backoff needs 0 < initial <= maximum, not {self.initial} and {self.maximum}")
        if self.factor < 1:
            raise Invalid(f"backoff factor must be >= 1, not {self.factor}")
        if not 0.0 <= self.randomness < 1.0:
            raise Invalid(f"backoff randomness must be within [0, 1), not {self.randomness}")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry ``attempt``; never more than ``maximum``.

        A negative attempt counts as the first (callers count from "attempts made - 1").
        """
        attempt = max(attempt, 0)
        # Compare exponents rather than computing factor**attempt, which overflows.
        if self.factor > 1 and attempt * math.log(self.factor) >= math.log(self.maximum / self.initial):
            return self.maximum
        return min(self.maximum, self.initial * self.factor**attempt)

    def delay(self, attempt: int, u: float | None = None) -> float:
        """The wait before retry ``attempt``, in [(1 - randomness) * ceiling, ceiling].

        ``u`` is a random number in [0, 1]; None draws one (for callers that need no
        reproducible sequence).
        """
        if u is None:
            u = random.random()  # noqa: S311 - spreading retries, not security
        elif not 0.0 <= u <= 1.0 or math.isnan(u):
            raise Invalid(f"u must be within [0, 1], not {u}")
        return self.ceiling(attempt) * (1.0 - self.randomness * u)


__all__ = ["Backoff"]
