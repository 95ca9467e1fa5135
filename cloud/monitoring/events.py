"""The monitoring vocabulary: event types, their severities, and the event message apps receive.

An organisation gets an event when it subscribed to that type and holds MONITORING or OWNER on
the device: on ``app/{org}/monitoring/{eventType}`` and at its webhook, as its subscription says
(in the platform's processes; see :mod:`cloud.monitoring.notifier`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud.registry.functions import DeviceFunction, FunctionGroup, groups_allowing


class Severity(StrEnum):
    """How urgently a person should look: INFO (nothing to do) up to CRITICAL (act now)."""

    INFO = "INFO"
    WARNING = "WARNING"
    MAJOR = "MAJOR"
    CRITICAL = "CRITICAL"


class EventType(StrEnum):
    """Everything device status monitoring can report."""

    CONCENTRATOR_ONLINE = "CONCENTRATOR_ONLINE"
    CONCENTRATOR_OFFLINE = "CONCENTRATOR_OFFLINE"
    DEVICE_ONLINE = "DEVICE_ONLINE"
    DEVICE_OFFLINE = "DEVICE_OFFLINE"
    COMMUNICATION_FAILURE = "COMMUNICATION_FAILURE"
    CLOCK_DRIFT = "CLOCK_DRIFT"
    POWER_FAILURE = "POWER_FAILURE"
    POWER_RESTORED = "POWER_RESTORED"
    TAMPER = "TAMPER"
    FIRMWARE_FAILED = "FIRMWARE_FAILED"
    # Reported by devices themselves (broker.schemas.DeviceEventType) besides the four above.
    DISCONNECTOR_OPENED = "DISCONNECTOR_OPENED"
    DISCONNECTOR_CLOSED = "DISCONNECTOR_CLOSED"
    METER_ALARM = "METER_ALARM"
    METER_EVENT = "METER_EVENT"

    @property
    def severity(self) -> Severity:
        return SEVERITY[self]


SEVERITY: dict[EventType, Severity] = {
    EventType.CONCENTRATOR_ONLINE: Severity.INFO,
    # A whole concentrator gone means every meter behind it is dark.
    EventType.CONCENTRATOR_OFFLINE: Severity.MAJOR,
    EventType.DEVICE_ONLINE: Severity.INFO,
    EventType.DEVICE_OFFLINE: Severity.WARNING,
    EventType.COMMUNICATION_FAILURE: Severity.WARNING,
    EventType.CLOCK_DRIFT: Severity.WARNING,
    EventType.POWER_FAILURE: Severity.MAJOR,
    EventType.POWER_RESTORED: Severity.INFO,
    # Possible fraud or safety issue at the meter.
    EventType.TAMPER: Severity.CRITICAL,
    EventType.FIRMWARE_FAILED: Severity.MAJOR,
    EventType.DISCONNECTOR_OPENED: Severity.WARNING,
    EventType.DISCONNECTOR_CLOSED: Severity.INFO,
    EventType.METER_ALARM: Severity.WARNING,
    EventType.METER_EVENT: Severity.INFO,
}

# The function groups that entitle an organisation to a device's monitoring events.
NOTIFY_GROUPS: frozenset[FunctionGroup] = groups_allowing(DeviceFunction.RECEIVE_EVENTS)

# The ``domain`` level of the app topic events are published under.
MONITORING_DOMAIN = "monitoring"


class MonitoringEvent(BaseModel):
    """One event about one device (a concentrator is a device too), as published to apps."""

    model_config = ConfigDict(populate_by_name=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, alias="eventId")
    event_type: EventType = Field(alias="eventType")
    severity: Severity
    device_id: str = Field(alias="deviceId", min_length=1, max_length=64)
    occurred_at: AwareDatetime = Field(alias="occurredAt")
    detail: dict[str, Any] = Field(default_factory=dict)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


def make_event(event_type: EventType, device_id: str, *, at: datetime, **detail: Any) -> MonitoringEvent:
    """An event of ``event_type`` with the type's standard severity."""
    return MonitoringEvent(event_type=event_type, severity=event_type.severity, device_id=device_id,
                           occurred_at=at, detail=detail)
