"""Device status monitoring: concentrator liveness, device connectivity, events and alarms,
and per-organisation notifications on ``app/{org}/monitoring/{eventType}``."""

from cloud.monitoring.events import (
    NOTIFY_GROUPS,
    SEVERITY,
    EventType,
    MonitoringEvent,
    Severity,
    make_event,
)
from cloud.monitoring.liveness import HeldStatus, decide
from cloud.monitoring.monitor import DEFAULT_SILENCE, StatusMonitor
from cloud.monitoring.notifier import Notifier
from cloud.monitoring.store import MonitoringStore

__all__ = [
    "DEFAULT_SILENCE", "NOTIFY_GROUPS", "SEVERITY", "EventType", "HeldStatus", "MonitoringEvent",
    "MonitoringStore", "Notifier", "Severity", "StatusMonitor", "decide", "make_event",
]
