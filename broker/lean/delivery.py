"""End-to-end delivery confirmation, lean: ``gw-seq`` lists, DeliveryAck and Refusal (the contract's
pydantic models and the protocol's description: broker/schemas/delivery.py)."""

from __future__ import annotations

from collections.abc import Iterable

from broker.lean.base import Field, Lean, integer, json_bytes, list_of, model, pair_of, text

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


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """``seqs`` as sorted inclusive ranges, duplicates dropped (a DeliveryAck's ``seqs``)."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def expand_ranges(ranges: Iterable[tuple[int, int]]) -> list[int]:
    out: list[int] = []
    for first, last in ranges:
        if last < first or last - first > 1_000_000:
            raise ValueError(f"bad range [{first}, {last}]")
        out.extend(range(first, last + 1))
    return out


class Refusal(Lean):
    """One message refused for good: sending it again cannot succeed."""

    fields = (
        Field("seq", integer()),
        # An MQTT 5 reason code: 0x99 payload format invalid, 0x90 topic name invalid, 0x87 not authorised.
        Field("reason_code", integer(ge=0x80, le=0xFF), alias="reasonCode"),
        Field("reason", text(max_length=1000)),
    )


class DeliveryAck(Lean):
    """Sequence numbers stored, as inclusive ranges ``[[first, last], ...]``, and any refused."""

    fields = (
        Field("seqs", list_of(pair_of(integer()), max_length=100_000)),
        Field("refused", list_of(model(Refusal), max_length=10_000), factory=list),
    )

    @classmethod
    def of(cls, seqs: Iterable[int], *, refused: Iterable[Refusal] = ()) -> DeliveryAck:
        return cls(seqs=seq_ranges(seqs), refused=list(refused))

    def expand(self) -> list[int]:
        return expand_ranges(self.seqs)

    def to_wire(self) -> bytes:
        if not self.refused:
            return json_bytes({"seqs": [list(pair) for pair in self.seqs]})
        return self.dump_json()
