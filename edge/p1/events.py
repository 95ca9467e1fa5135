"""A P1 meter's power failure log as device events (pure).

A DSMR meter sends its long power failure log (``1-0:99.97.0``: when each failure ended and
how long it lasted) in every telegram, once a second. Each entry becomes one POWER_FAILURE
event, at the time the power went (end minus duration), with the end and the duration in its
detail. The event's id derives from the meter and that time, so the entry is the same event in
every telegram, before and after a restart; :class:`FailureLogWatch` skips telegrams whose log
did not change, and the concentrator's :class:`~edge.events.DeviceEvents` skips entries it
already queued.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.lean import DeviceEvent, DeviceEventType, EventSource
from edge.p1.telegram import PowerFailure, Telegram


def failure_events(meter_id: str, failures: tuple[PowerFailure, ...]) -> list[DeviceEvent]:
    """One POWER_FAILURE per log entry, oldest first."""
    events = []
    for failure in sorted(failures, key=lambda f: f.ended):
        started = failure.ended - failure.duration
        events.append(DeviceEvent.make(meter_id, DeviceEventType.POWER_FAILURE, started,
                                       source=EventSource.P1_FAILURE_LOG, key="p1-log",
                                       restoredAt=failure.ended.isoformat(),
                                       durationSeconds=int(failure.duration.total_seconds())))
    return events


class FailureLogWatch:
    """Hands a meter's power failure log to ``sink`` as events when it changes."""

    def __init__(self, meter_id: str, sink: Callable[[list[DeviceEvent]], object]) -> None:
        self.meter_id = meter_id
        self._sink = sink
        self._last: tuple[PowerFailure, ...] | None = None

    def __call__(self, telegram: Telegram) -> None:
        log = telegram.power_failures
        if log == self._last:
            return
        self._last = log
        if log:
            self._sink(failure_events(self.meter_id, log))
