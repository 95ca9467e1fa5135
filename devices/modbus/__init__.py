"""Modbus register maps as data: where a device holds each value and what it means in OMDP."""

from devices.modbus.data_types import DataType, WordOrder
from devices.modbus.register_map import (
    MAPS_DIR,
    Point,
    RegisterMap,
    RegisterMapError,
    RegisterType,
    available_maps,
    load_map,
    map_path,
    parse_map,
)

__all__ = [
    "MAPS_DIR", "DataType", "Point", "RegisterMap", "RegisterMapError", "RegisterType", "WordOrder",
    "available_maps", "load_map", "map_path", "parse_map",
]
