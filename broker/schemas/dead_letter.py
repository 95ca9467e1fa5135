"""A message the platform could not accept, kept with the reason instead of being lost."""

from __future__ import annotations

from pydantic import BaseModel, Field

from broker.schemas.meter_reading import AwareDatetime

MAX_KEPT_PAYLOAD = 64 * 1024


class DeadLetter(BaseModel):
    topic: str
    reason: str
    received_at: AwareDatetime = Field(alias="receivedAt")
    # The payload as text when it decodes, else as hex; cut at MAX_KEPT_PAYLOAD.
    payload: str
    payload_truncated: bool = Field(default=False, alias="payloadTruncated")
    consumer: str

    model_config = {"populate_by_name": True}

    @classmethod
    def of(cls, *, topic: str, payload: bytes, reason: str, received_at, consumer: str) -> DeadLetter:
        cut = payload[:MAX_KEPT_PAYLOAD]
        try:
            text = cut.decode("utf-8")
        except UnicodeDecodeError:
            text = "hex:" + cut.hex()
        return cls(topic=topic, reason=reason, receivedAt=received_at, payload=text,
                   payloadTruncated=len(payload) > MAX_KEPT_PAYLOAD, consumer=consumer)
