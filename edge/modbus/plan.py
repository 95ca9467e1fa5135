"""Pure read planning: group a map's points into few Modbus requests and decode the answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devices.modbus.data_types import DataType
from devices.modbus.register_map import Point, RegisterMap, RegisterType
from edge.modbus.codec import decode, encode, to_engineering, to_raw

# Protocol limits per request (Modbus application protocol, 6.1-6.4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000

Value = bool | float


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read request: ``count`` registers (or bits) of one type from ``address``."""

    register_type: RegisterType
    address: int
    count: int
    points: tuple[Point, ...]


def plan_reads(register_map: RegisterMap, *, max_gap: int | None = None,
               max_registers: int = MAX_REGISTERS_PER_READ, max_bits: int = MAX_BITS_PER_READ) -> list[ReadRequest]:
    """Requests that read every point of ``register_map``, merging neighbours.

    Points of one register type are merged while the gap between them is at most ``max_gap``
    (the map's ``maxGap`` by default) and the request stays within the protocol limit.
    """
    gap = register_map.max_gap if max_gap is None else max_gap
    requests: list[ReadRequest] = []
    for register_type in RegisterType:
        limit = max_bits if register_type.is_bit else max_registers
        group: list[Point] = []
        for point in register_map.by_register(register_type):
            if group:
                start = group[0].address
                end = max(p.end for p in group)
                if point.address - end <= gap and point.end - start <= limit:
                    group.append(point)
                    continue
                requests.append(_request(register_type, group))
            group = [point]
        if group:
            requests.append(_request(register_type, group))
    return requests


def _request(register_type: RegisterType, group: list[Point]) -> ReadRequest:
    start = group[0].address
    return ReadRequest(register_type, start, max(p.end for p in group) - start, tuple(group))


def decode_point(point: Point, chunk: Sequence[int] | Sequence[bool]) -> Value:
    """The engineering value of ``point`` from its registers (or its one bit)."""
    if point.type is DataType.BOOL:
        return bool(chunk[0])
    raw = decode([int(word) for word in chunk], point.type, point.word_order)
    return to_engineering(raw, point.multiplier)


def decode_response(request: ReadRequest, data: Sequence[int] | Sequence[bool]) -> dict[str, Value]:
    """Values by point name from the registers or bits a request returned."""
    if len(data) < request.count:
        raise ValueError(f"expected {request.count} values from address {request.address}, got {len(data)}")
    values: dict[str, Value] = {}
    for point in request.points:
        offset = point.address - request.address
        values[point.name] = decode_point(point, data[offset:offset + point.register_count])
    return values


def encode_point(point: Point, value: Value) -> list[int] | bool:
    """The registers (or the bit) to write so that ``point`` reads ``value``."""
    if point.type is DataType.BOOL:
        return bool(value)
    raw = to_raw(float(value), point.multiplier, point.type)
    return encode(raw, point.type, point.word_order)
