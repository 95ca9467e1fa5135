"""Modbus at the edge: a pure codec, an async adapter and a simulator (register maps, which
the cloud reads too, are in ``devices/modbus``; re-exported here for the edge's callers)."""

from devices.modbus import (
    DataType,
    Point,
    RegisterMap,
    RegisterMapError,
    RegisterType,
    WordOrder,
    available_maps,
    load_map,
)
from edge.modbus.adapter import ModbusAdapter
from edge.modbus.codec import CodecError
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
from edge.modbus.simulator import ModbusSimulator
from edge.modbus.source import ModbusConnections, ModbusMeterSource, build_sources

__all__ = [
    "CodecError", "DataType", "ModbusAdapter", "ModbusCommunicationError", "ModbusConnections",
    "ModbusMeterConfig", "ModbusMeterSource", "ModbusPointError", "ModbusProtocolError", "ModbusSerialTarget",
    "ModbusSimulator", "ModbusTcpTarget", "Point", "PointNotWritableError", "PointValueError", "PtyNullModem", "RegisterMap",
    "RegisterMapError", "RegisterType", "UnknownPointError", "WordOrder", "available_maps", "build_sources",
    "load_map",
]
