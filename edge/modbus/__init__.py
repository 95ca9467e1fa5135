"""Modbus at the edge: register maps as data, a pure codec, an async adapter and a simulator."""

from edge.modbus.adapter import ModbusAdapter
from edge.modbus.codec import CodecError, DataType, WordOrder
from edge.modbus.config import ModbusMeterConfig, ModbusSerialTarget, ModbusTcpTarget
from edge.modbus.errors import (
    ModbusCommunicationError,
    ModbusPointError,
    ModbusProtocolError,
    PointNotWritableError,
    PointValueError,
    UnknownPointError,
)
from edge.modbus.nullmodem import PtyNullModem
from edge.modbus.register_map import Point, RegisterMap, RegisterMapError, RegisterType, available_maps, load_map
from edge.modbus.simulator import ModbusSimulator
from edge.modbus.source import ModbusConnections, ModbusMeterSource, build_sources

__all__ = [
    "CodecError", "DataType", "ModbusAdapter", "ModbusCommunicationError", "ModbusConnections",
    "ModbusMeterConfig", "ModbusMeterSource", "ModbusPointError", "ModbusProtocolError", "ModbusSerialTarget",
    "ModbusSimulator", "ModbusTcpTarget", "Point", "PointNotWritableError", "PointValueError", "PtyNullModem", "RegisterMap",
    "RegisterMapError", "RegisterType", "UnknownPointError", "WordOrder", "available_maps", "build_sources",
    "load_map",
]
