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

SEQ_PROPERTY = "gw-seq"
# The MQTT 5 reason codes a refusal gives.
NOT_AUTHORISED = 0x87
PAYLOAD_FORMAT_INVALID = 0x99
# The most sequence numbers one ``gw-seq`` may name (a batch's readings: MeterReadingBatch's bound).
MAX_SEQS = 10_000


def seq_list(seqs: Iterable[int]) -> str:
    """``seqs`` (in their order) as a ``gw-seq`` value: ascending runs written ``first-last``,
    comma separated; a single number is written as itself, as on a one-reading message."""
    parts: list[str] = []
    first = last = None
    for seq in seqs:
        if last is not None and seq == last + 1:
            last = seq
            continue
        if first is not None:
            parts.append(str(first) if first == last else f"{first}-{last}")
        first = last = seq
    if first is not None:
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


def parse_seq_list(raw: str) -> list[int]:
    """The sequence numbers a ``gw-seq`` value names, in order; ValueError if it is malformed or
    names more than MAX_SEQS."""
    out: list[int] = []
    for part in raw.split(","):
        first, sep, last = part.partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(f"gw-seq {raw[:80]!r} is not a list of numbers and ranges")
        start, end = int(first), int(last) if sep else int(first)
        if end < start or len(out) + end - start >= MAX_SEQS:
            raise ValueError(f"gw-seq {raw[:80]!r}: bad range or more than {MAX_SEQS} numbers")
        out.extend(range(start, end + 1))
    return out


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
        ranges: list[tuple[int, int]] = []
        for seq in sorted(set(seqs)):
            if ranges and seq == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], seq)
            else:
                ranges.append((seq, seq))
        return cls(seqs=ranges, refused=list(refused))

    def expand(self) -> list[int]:
        out: list[int] = []
        for first, last in self.seqs:
            if last < first or last - first > 1_000_000:
                raise ValueError(f"bad range [{first}, {last}]")
            out.extend(range(first, last + 1))
        return out

    def to_wire(self) -> bytes:
        if not self.refused:
            return self.model_dump_json(include={"seqs"}).encode()
        return self.model_dump_json(by_alias=True).encode()
