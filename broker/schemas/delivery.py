"""End-to-end delivery confirmation: the cloud tells a concentrator which messages are stored.

A broker's PUBACK only says the broker has a message. A broker can still lose it (mosquitto
2.0.11 restores a persisted session without its shared subscriptions after a restart, and a
killed broker loses what arrived since its last save), so the concentrator keeps each
message until the cloud confirms it stored it, and sends it again if no confirmation comes.
Messages carry their outbox sequence number in the MQTT 5 user property ``gw-seq``; the
OMDP payload itself is forwarded unmodified. A batch of live readings
(``concentrator/{cid}/batch/meterReading``) is several outbox messages in one: its ``gw-seq``
holds their sequence numbers in the order of its readings, as ranges (``"41-57,60"``,
:func:`seq_list`), and each is confirmed, or refused, on its own.

The same confirmation goes from a concentrator to an external adapter on the concentrator's
local listener (``adapter/{adapter}/ack``), with the adapter's own sequence numbers; there it
may also name messages *refused* for good, each with an MQTT 5 reason code and the reason
(a subscriber cannot put a reason code in the publisher's PUBACK: the broker sends that).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from broker.lean.delivery import (MAX_SEQS, NOT_AUTHORISED, PAYLOAD_FORMAT_INVALID, SEQ_PROPERTY, expand_ranges,
                                  parse_seq_list, seq_list, seq_ranges)

__all__ = ["MAX_SEQS", "NOT_AUTHORISED", "PAYLOAD_FORMAT_INVALID", "SEQ_PROPERTY", "DeliveryAck", "Refusal",
           "parse_seq_list", "seq_list"]


class Refusal(BaseModel):
    """One message refused for good: sending it again cannot succeed."""

    model_config = ConfigDict(populate_by_name=True)

    seq: int
    # An MQTT 5 reason code: 0x99 payload format invalid, 0x90 topic name invalid, 0x87 not authorised.
    reason_code: int = Field(alias="reasonCode", ge=0x80, le=0xFF)
    reason: str = Field(max_length=1000)


class DeliveryAck(BaseModel):
    """Sequence numbers stored, as inclusive ranges ``[[first, last], ...]``, and any refused."""

    seqs: list[tuple[int, int]] = Field(max_length=100_000)
    refused: list[Refusal] = Field(default_factory=list, max_length=10_000)

    @classmethod
    def of(cls, seqs: Iterable[int], *, refused: Iterable[Refusal] = ()) -> DeliveryAck:
        return cls(seqs=seq_ranges(seqs), refused=list(refused))

    def expand(self) -> list[int]:
        return expand_ranges(self.seqs)

    def to_wire(self) -> bytes:
        if not self.refused:
            return self.model_dump_json(include={"seqs"}).encode()
        return self.model_dump_json(by_alias=True).encode()
