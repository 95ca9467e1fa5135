"""What a Modbus point's registers hold: data types, word order and their sizes.

A register map names these; the edge's codec (``edge/modbus/codec.py``) converts words to and
from values of these types.
"""

from __future__ import annotations

from enum import StrEnum

from broker.errors import Invalid


class DataType(StrEnum):
    """What a point's registers hold."""

    BOOL = "bool"
    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    UINT64 = "uint64"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"


class WordOrder(StrEnum):
    BIG = "big"
    LITTLE = "little"


class DataTypeError(Invalid):
    """A question a data type cannot answer (the integer range of a float or a bool)."""


# Registers per register-backed type (a bool occupies one bit).
_REGISTERS: dict[DataType, int] = {
    DataType.UINT16: 1,
    DataType.INT16: 1,
    DataType.UINT32: 2,
    DataType.INT32: 2,
    DataType.UINT64: 4,
    DataType.INT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}


def is_float(data_type: DataType) -> bool:
    return data_type in (DataType.FLOAT32, DataType.FLOAT64)


def register_count(data_type: DataType) -> int:
    """How many 16-bit registers a value of ``data_type`` occupies (a bool occupies one bit)."""
    if data_type is DataType.BOOL:
        return 1
    return _REGISTERS[data_type]


def int_range(data_type: DataType) -> tuple[int, int]:
    """The smallest and largest raw integer ``data_type`` holds."""
    if data_type is DataType.BOOL or is_float(data_type):
        raise DataTypeError(f"{data_type} is not an integer type")
    bits = 16 * register_count(data_type)
    if data_type.value.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
