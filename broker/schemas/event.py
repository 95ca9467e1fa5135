"""Device events: what a meter reports of itself (power failure, tamper, alarms), edge to cloud.

An event crosses the broker as readings do: the concentrator puts it in its durable outbox,
publishes it on ``concentrator/{cid}/event/{device}`` with its outbox sequence number
(``gw-seq``), and deletes it only when the cloud confirms, on ``concentrator/{cid}/ack``, that
it stored it. Its id derives from the device, the type, when it happened and what reported it,
so the same event seen twice (a pushed notification repeated, a P1 failure log that every
telegram repeats, a redelivery) is the same row in the cloud's store.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

EVENT_NAMESPACE = uuid.UUID("0d5f6f0e-7a53-4b8e-9d8e-6c2a7f3e1b44")

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


class DeviceEvent(BaseModel):
    """One event of one device, as the concentrator forwards it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    event_id: uuid.UUID = Field(alias="eventId")
    device_id: str = Field(alias="deviceId", min_length=1, max_length=128, pattern=r"^[^/+#\x00-\x1f]+$")
    event_type: DeviceEventType = Field(alias="eventType")
    occurred_at: AwareDatetime = Field(alias="occurredAt")
    source: EventSource
    detail: dict[str, Scalar] = Field(default_factory=dict, max_length=32)

    @classmethod
    def derive_id(cls, device_id: str, event_type: DeviceEventType, occurred_at: datetime, key: str = "") -> uuid.UUID:
        """The event's id: the same device, type, instant (to the second, in UTC) and ``key``
        (what distinguishes two events of one type at one instant: an alarm bit, a code) give
        the same id."""
        moment = occurred_at.astimezone(UTC).replace(microsecond=0).isoformat()
        return uuid.uuid5(EVENT_NAMESPACE, f"{device_id}|{event_type.value}|{moment}|{key}")

    @classmethod
    def make(cls, device_id: str, event_type: DeviceEventType, occurred_at: datetime, *, source: EventSource,
             key: str = "", **detail: Scalar) -> DeviceEvent:
        return cls(event_id=cls.derive_id(device_id, event_type, occurred_at, key), device_id=device_id,
                   event_type=event_type, occurred_at=occurred_at, source=source, detail=detail)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
