"""Pure conversion between Modbus register words and typed, scaled values.

Modbus carries 16-bit big-endian words; multi-word values are stored high word first
("big" word order) or low word first ("little", common on inverters). Scaling turns a raw
integer into an engineering value: ``value = raw * multiplier``. The data types themselves
are part of the register maps' description (``devices/modbus/data_types.py``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from broker.errors import Invalid
from devices.modbus.data_types import DataType, WordOrder, int_range, is_float, register_count


class CodecError(Invalid):
    """A value that does not fit the point's data type, or words of the wrong count."""


# struct format per register-backed type (the register count is the data type's own).
_FORMAT: dict[DataType, str] = {
    DataType.UINT16: "H",
    DataType.INT16: "h",
    DataType.UINT32: "I",
    DataType.INT32: "i",
    DataType.UINT64: "Q",
    DataType.INT64: "q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}

FLOAT32_MAX = 3.4028234663852886e38


def decode(words: Sequence[int], data_type: DataType, word_order: WordOrder = WordOrder.BIG) -> int | float:
    """The raw value held in ``words`` (exactly ``register_count(data_type)`` of them)."""
    fmt, count = _FORMAT[data_type], register_count(data_type)
    if len(words) != count:
        raise CodecError(f"{data_type} needs {count} registers, got {len(words)}")
    if any(not 0 <= word <= 0xFFFF for word in words):
        raise CodecError(f"register words must be within 0..65535: {list(words)}")
    ordered = list(words) if word_order is WordOrder.BIG else list(reversed(words))
    return struct.unpack(f">{fmt}", struct.pack(f">{count}H", *ordered))[0]


def encode(raw: int | float, data_type: DataType, word_order: WordOrder = WordOrder.BIG) -> list[int]:
    """The register words holding raw value ``raw``; CodecError if it does not fit."""
    fmt, count = _FORMAT[data_type], register_count(data_type)
    if is_float(data_type):
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise CodecError(f"{data_type} needs a finite number, got {raw!r}")
        if data_type is DataType.FLOAT32 and abs(raw) > FLOAT32_MAX:
            raise CodecError(f"{raw!r} is out of range for float32")
    else:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise CodecError(f"{data_type} needs an integer, got {raw!r}")
        low, high = int_range(data_type)
        if not low <= raw <= high:
            raise CodecError(f"{raw} is out of range for {data_type} ({low}..{high})")
    words = list(struct.unpack(f">{count}H", struct.pack(f">{fmt}", raw)))
    return words if word_order is WordOrder.BIG else list(reversed(words))


def to_engineering(raw: int | float, multiplier: float) -> float:
    """The engineering value of a raw register value."""
    value = raw * multiplier
    # Keep 2305 * 0.1 at 230.5 rather than 230.50000000000003.
    return round(value, 9) if multiplier != 1 else float(value)


def to_raw(value: float, multiplier: float, data_type: DataType) -> int | float:
    """The raw value to write so that the point reads ``value``; CodecError if it does not fit."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CodecError(f"expected a finite number, got {value!r}")
    scaled = value / multiplier
    if is_float(data_type):
        encode(scaled, data_type)  # range check
        return scaled
    raw = round(scaled)
    low, high = int_range(data_type)
    if not low <= raw <= high:
        raise CodecError(
            f"{value} is out of range: it needs raw {raw}, outside {data_type} {low}..{high}"
            + (f" (scale {multiplier:g})" if multiplier != 1 else "")
        )
    return raw
