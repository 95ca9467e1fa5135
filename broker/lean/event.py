"""Device events, lean (the contract's pydantic model and how events travel: broker/schemas/event.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from broker.lean.base import Field, BadValue, Lean, aware_datetime, identifier, mapping_of, member, optional, text

EVENT_NAMESPACE = uuid.UUID("0d5f6f0e-7a53-4b8e-9d8e-6c2a7f3e1b44")
DEVICE_ID_PATTERN = r"^[^/+#\x00-\x1f]+$"

Scalar = str | int | float | bool | None


class DeviceEventType(StrEnum):
    """The kinds of event a device reports (the cloud's monitoring vocabulary includes them all)."""

    POWER_FAILURE = "POWER_FAILURE"
    POWER_RESTORED = "POWER_RESTORED"
    TAMPER = "TAMPER"
    DISCONNECTOR_OPENED = "DISCONNECTOR_OPENED"
    DISCONNECTOR_CLOSED = "DISCONNECTOR_CLOSED"
    # A bit of the meter's alarm register not named by a type above.
    METER_ALARM = "METER_ALARM"
    # A logged meter event not named by a type above (its code and name are in the detail).
    METER_EVENT = "METER_EVENT"
    FIRMWARE_FAILED = "FIRMWARE_FAILED"


class EventSource(StrEnum):
    """What reported the event."""

    DLMS_PUSH = "dlms-push"
    P1_FAILURE_LOG = "p1-failure-log"
    FIRMWARE = "firmware"


def derive_event_id(device_id: str, event_type: DeviceEventType, occurred_at: datetime, key: str = "") -> uuid.UUID:
    """The event's id: the same device, type, instant (to the second, in UTC) and ``key`` (what
    distinguishes two events of one type at one instant: an alarm bit, a code) give the same id."""
    moment = occurred_at.astimezone(UTC).replace(microsecond=0).isoformat()
    return uuid.uuid5(EVENT_NAMESPACE, f"{device_id}|{event_type.value}|{moment}|{key}")


def _scalar(value: object) -> Scalar:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise BadValue("Input should be a valid string, integer, number or boolean")


class DeviceEvent(Lean):
    """One event of one device, as the concentrator forwards it."""

    forbid_extra = True
    fields = (
        Field("event_id", identifier, alias="eventId"),
        Field("device_id", text(min_length=1, max_length=128, pattern=DEVICE_ID_PATTERN), alias="deviceId"),
        Field("event_type", member(DeviceEventType), alias="eventType"),
        Field("occurred_at", aware_datetime, alias="occurredAt"),
        Field("source", member(EventSource)),
        Field("detail", mapping_of(optional(_scalar), max_length=32), factory=dict),
    )

    derive_id = staticmethod(derive_event_id)

    @classmethod
    def make(cls, device_id: str, event_type: DeviceEventType, occurred_at: datetime, *, source: EventSource,
             key: str = "", **detail: Scalar) -> DeviceEvent:
        return cls(event_id=derive_event_id(device_id, event_type, occurred_at, key), device_id=device_id,
                   event_type=event_type, occurred_at=occurred_at, source=source, detail=detail)

    def to_wire(self) -> bytes:
        return self.dump_json()
