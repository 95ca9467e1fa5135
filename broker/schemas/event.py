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
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from broker.lean.event import (DEVICE_ID_PATTERN, EVENT_NAMESPACE, DeviceEventType, EventSource, Scalar,
                               derive_event_id)

__all__ = ["EVENT_NAMESPACE", "DeviceEvent", "DeviceEventType", "EventSource", "Scalar"]


class DeviceEvent(BaseModel):
    """One event of one device, as the concentrator forwards it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    event_id: uuid.UUID = Field(alias="eventId")
    device_id: str = Field(alias="deviceId", min_length=1, max_length=128, pattern=DEVICE_ID_PATTERN)
    event_type: DeviceEventType = Field(alias="eventType")
    occurred_at: AwareDatetime = Field(alias="occurredAt")
    source: EventSource
    detail: dict[str, Scalar] = Field(default_factory=dict, max_length=32)

    @classmethod
    def derive_id(cls, device_id: str, event_type: DeviceEventType, occurred_at: datetime, key: str = "") -> uuid.UUID:
        """The event's id (:func:`broker.lean.event.derive_event_id`)."""
        return derive_event_id(device_id, event_type, occurred_at, key)

    @classmethod
    def make(cls, device_id: str, event_type: DeviceEventType, occurred_at: datetime, *, source: EventSource,
             key: str = "", **detail: Scalar) -> DeviceEvent:
        return cls(event_id=cls.derive_id(device_id, event_type, occurred_at, key), device_id=device_id,
                   event_type=event_type, occurred_at=occurred_at, source=source, detail=detail)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
