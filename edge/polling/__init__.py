"""Protocol-independent meter polling: schedules, per-meter exclusivity, retries and health."""

from edge.polling.errors import MeterAuthenticationError, MeterCommunicationError, MeterError, MeterProtocolError
from edge.polling.health import HealthTracker
from edge.polling.poller import MeterPoller, RecoveredHook, Sink
from edge.polling.source import MeterSource
from edge.polling.timing import jitter_delay, next_tick

__all__ = [
    "HealthTracker", "MeterAuthenticationError", "MeterCommunicationError", "MeterError",
    "MeterPoller", "MeterProtocolError", "MeterSource", "RecoveredHook", "Sink", "jitter_delay", "next_tick",
]
