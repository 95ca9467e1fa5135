"""An MQTT-native light's status, lean (the contract's pydantic models: broker/schemas/light.py)."""

from __future__ import annotations

from broker.lean.base import Field, Lean, aware_datetime, boolean, integer, list_of, model, optional, text


class RelayState(Lean):
    """One relay of a light controller."""

    fields = (Field("index", integer(ge=1)), Field("closed", boolean))


class LightStatus(Lean):
    """What a light reports after a change, and at every connection (``birth``)."""

    fields = (
        Field("device_id", text(min_length=1), alias="deviceId"),
        Field("on", boolean),
        Field("dim_level", integer(ge=0, le=100), alias="dimLevel"),
        Field("relays", list_of(model(RelayState))),
        Field("schedule_version", optional(integer(ge=0)), alias="scheduleVersion", default=None),
        Field("birth", boolean, default=False),
        Field("at", aware_datetime),
    )

    def to_wire(self) -> bytes:
        return self.dump_json(exclude_none=True)
