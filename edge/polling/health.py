"""Per-meter health bookkeeping for the poller (pure: no clocks, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from broker.lean import MeterHealth

# Longer error texts are cut: the health record travels in the retained status message.
_MAX_ERROR_CHARS = 300


@dataclass(slots=True)
class _State:
    protocol: str
    last_success: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    down_since: datetime | None = None
    # Totals for metrics: reads that succeeded and failed, and seconds spent in successful reads.
    successes: int = 0
    failures: int = 0
    seconds: float = 0.0


class HealthTracker:
    """Counts successes and failures per meter and says when a meter is unhealthy or recovered."""

    def __init__(self, *, unhealthy_after: int = 3) -> None:
        if unhealthy_after < 1:
            raise ValueError("unhealthy_after must be >= 1")
        self.unhealthy_after = unhealthy_after
        self._states: dict[str, _State] = {}

    def register(self, meter_id: str, protocol: str) -> None:
        self._states.setdefault(meter_id, _State(protocol=protocol))

    def forget(self, meter_id: str) -> None:
        self._states.pop(meter_id, None)

    def record_failure(self, meter_id: str, *, at: datetime, error: BaseException) -> None:
        """Note a failed attempt that started at ``at``."""
        state = self._states[meter_id]
        state.failures += 1
        state.consecutive_failures += 1
        text = f"{type(error).__name__}: {error}"
        state.last_error = text[:_MAX_ERROR_CHARS]
        if state.down_since is None:
            state.down_since = at

    def record_success(self, meter_id: str, *, at: datetime, seconds: float = 0.0) -> datetime | None:
        """Note a successful read (that took ``seconds``); return when the outage began if this
        ends one, else None."""
        state = self._states[meter_id]
        state.successes += 1
        state.seconds += seconds
        down_since = state.down_since
        state.last_success = at
        state.consecutive_failures = 0
        state.down_since = None
        return down_since

    def is_healthy(self, meter_id: str) -> bool:
        return self._states[meter_id].consecutive_failures < self.unhealthy_after

    def down_since(self, meter_id: str) -> datetime | None:
        return self._states[meter_id].down_since

    def snapshot(self, meter_id: str) -> MeterHealth:
        state = self._states[meter_id]
        return MeterHealth(
            meter_id=meter_id,
            protocol=state.protocol,
            healthy=state.consecutive_failures < self.unhealthy_after,
            last_success=state.last_success,
            consecutive_failures=state.consecutive_failures,
            last_error=state.last_error,
        )

    def totals(self) -> dict[str, tuple[str, int, int, float]]:
        """Per meter: (protocol, successes, failures, seconds spent in successful reads)."""
        return {m: (s.protocol, s.successes, s.failures, s.seconds) for m, s in self._states.items()}

    def all(self) -> list[MeterHealth]:
        return [self.snapshot(meter_id) for meter_id in sorted(self._states)]
