"""An MQTT-native light's status: retained on ``device/{id}/status``, a birth at each connection."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from broker.schemas.meter_reading import AwareDatetime


class RelayState(BaseModel):
    """One relay of a light controller."""

    index: int = Field(ge=1)
    closed: bool


class LightStatus(BaseModel):
    """What a light reports after a change, and at every connection (``birth``).

    ``scheduleVersion`` is the version of the schedule the light keeps and runs itself (absent: it
    holds none); the cloud compares it with the version it wants the light to hold and sends the
    schedule again when a light that is born holds another.
    """

    model_config = ConfigDict(populate_by_name=True)

    device_id: str = Field(alias="deviceId", min_length=1)
    on: bool
    dim_level: int = Field(alias="dimLevel", ge=0, le=100)
    relays: list[RelayState]
    schedule_version: int | None = Field(default=None, alias="scheduleVersion", ge=0)
    # True on the status a light publishes when its connection is made (its own, or the fleet's).
    birth: bool = False
    at: AwareDatetime

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
