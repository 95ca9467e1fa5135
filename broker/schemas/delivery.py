"""End-to-end delivery confirmation: the cloud tells a concentrator which messages are stored.

A broker's PUBACK only says the broker has a message. A broker can still lose it (mosquitto
2.0.11 restores a persisted session without its shared subscriptions after a restart, and a
killed broker loses what arrived since its last save), so the concentrator keeps each
message until the cloud confirms it stored it, and sends it again if no confirmation comes.
Messages carry their outbox sequence number in the MQTT 5 user property ``gw-seq``; the
OMDP payload itself is forwarded unmodified.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

SEQ_PROPERTY = "gw-seq"


class DeliveryAck(BaseModel):
    """Sequence numbers stored, as inclusive ranges ``[[first, last], ...]``."""

    seqs: list[tuple[int, int]] = Field(max_length=100_000)

    @classmethod
    def of(cls, seqs: Iterable[int]) -> DeliveryAck:
        ranges: list[tuple[int, int]] = []
        for seq in sorted(set(seqs)):
            if ranges and seq == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], seq)
            else:
                ranges.append((seq, seq))
        return cls(seqs=ranges)

    def expand(self) -> list[int]:
        out: list[int] = []
        for first, last in self.seqs:
            if last < first or last - first > 1_000_000:
                raise ValueError(f"bad range [{first}, {last}]")
            out.extend(range(first, last + 1))
        return out

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()
