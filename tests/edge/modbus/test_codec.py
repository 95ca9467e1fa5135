"""Round trips and range checks of the pure register codec."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.modbus.data_types import DataType, WordOrder, int_range, register_count
from edge.modbus.codec import CodecError, decode, encode, to_engineering, to_raw

INT_TYPES = [DataType.UINT16, DataType.INT16, DataType.UINT32, DataType.INT32, DataType.UINT64, DataType.INT64]
orders = st.sampled_from(list(WordOrder))


@st.composite
def int_values(draw: st.DrawFn) -> tuple[DataType, int]:
    data_type = draw(st.sampled_from(INT_TYPES))
    low, high = int_range(data_type)
    return data_type, draw(st.integers(low, high))


@given(int_values(), orders)
def test_integers_round_trip(case: tuple[DataType, int], order: WordOrder) -> None:
    data_type, value = case
    words = encode(value, data_type, order)
    assert len(words) == register_count(data_type)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, data_type, order) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), orders)
def test_float32_round_trip(value: float, order: WordOrder) -> None:
    assert decode(encode(value, DataType.FLOAT32, order), DataType.FLOAT32, order) == value


@given(st.floats(allow_nan=False, allow_infinity=False), orders)
def test_float64_round_trip(value: float, order: WordOrder) -> None:
    assert decode(encode(value, DataType.FLOAT64, order), DataType.FLOAT64, order) == value


@given(st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4), st.sampled_from(INT_TYPES + [DataType.FLOAT64]))
def test_little_word_order_is_big_reversed(words: list[int], data_type: DataType) -> None:
    chunk = words[: register_count(data_type)]
    big = decode(chunk, data_type, WordOrder.BIG)
    little = decode(list(reversed(chunk)), data_type, WordOrder.LITTLE)
    assert big == little or (isinstance(big, float) and math.isnan(big) and math.isnan(little))


def test_known_layouts() -> None:
    # 0x12345678 high word first, then low word first.
    assert encode(0x12345678, DataType.UINT32, WordOrder.BIG) == [0x1234, 0x5678]
    assert encode(0x12345678, DataType.UINT32, WordOrder.LITTLE) == [0x5678, 0x1234]
    assert encode(-1, DataType.INT16) == [0xFFFF]
    assert encode(1.0, DataType.FLOAT32) == list(struct.unpack(">2H", struct.pack(">f", 1.0)))


@pytest.mark.parametrize(("value", "data_type"), [
    (65536, DataType.UINT16), (-1, DataType.UINT16), (32768, DataType.INT16), (2**32, DataType.UINT32),
    (-(2**63) - 1, DataType.INT64), (1.5, DataType.INT32), (True, DataType.UINT16), (1e39, DataType.FLOAT32),
    (math.inf, DataType.FLOAT64), (math.nan, DataType.FLOAT32),
])
def test_values_that_do_not_fit_are_refused(value: float, data_type: DataType) -> None:
    with pytest.raises(CodecError):
        encode(value, data_type)


def test_wrong_word_count_is_refused() -> None:
    with pytest.raises(CodecError, match="needs 2 registers"):
        decode([1], DataType.UINT32)


@given(int_values(), st.sampled_from([1.0, 0.1, 0.01, 0.001, 10.0, 1000.0]))
def test_scaled_values_round_trip(case: tuple[DataType, int], multiplier: float) -> None:
    data_type, raw = case
    value = to_engineering(raw, multiplier)
    if abs(raw) < 2**50:  # beyond this a float cannot hold every integer
        assert to_raw(value, multiplier, data_type) == raw


def test_scaled_write_out_of_range_names_the_scale() -> None:
    with pytest.raises(CodecError, match="scale 0.1"):
        to_raw(3276.8, 0.1, DataType.INT16)
    assert to_raw(230.5, 0.1, DataType.INT16) == 2305
    assert to_engineering(2305, 0.1) == 230.5
