"""Modbus at the edge: a pure codec, an async adapter and a simulator (register maps, which
the cloud reads too, are in ``devices/modbus``; re-exported here for the edge's callers).

The names below are imported when first used (PEP 562): a concentrator without Modbus meters
does not load pymodbus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.lazy import exports

if TYPE_CHECKING:
    from devices.modbus import DataType, Point, RegisterMap, RegisterMapError, RegisterType, WordOrder, available_maps, load_map
    from edge.modbus.adapter import ModbusAdapter
    from edge.modbus.codec import CodecError
    from edge.modbus.config import ModbusMeterConfig, ModbusSerialTarget, ModbusTcpTarget
    from edge.modbus.errors import ModbusCommunicationError, ModbusPointError, ModbusProtocolError, PointNotWritableError, PointValueError, UnknownPointError
    from edge.modbus.nullmodem import PtyNullModem
    from edge.modbus.simulator import ModbusSimulator
    from edge.modbus.source import ModbusConnections, ModbusMeterSource, build_sources

# Each name and the module it comes from.
_WHERE = {
    "DataType": "devices.modbus",
    "Point": "devices.modbus",
    "RegisterMap": "devices.modbus",
    "RegisterMapError": "devices.modbus",
    "RegisterType": "devices.modbus",
    "WordOrder": "devices.modbus",
    "available_maps": "devices.modbus",
    "load_map": "devices.modbus",
    "ModbusAdapter": "edge.modbus.adapter",
    "CodecError": "edge.modbus.codec",
    "ModbusMeterConfig": "edge.modbus.config",
    "ModbusSerialTarget": "edge.modbus.config",
    "ModbusTcpTarget": "edge.modbus.config",
    "ModbusCommunicationError": "edge.modbus.errors",
    "ModbusPointError": "edge.modbus.errors",
    "ModbusProtocolError": "edge.modbus.errors",
    "PointNotWritableError": "edge.modbus.errors",
    "PointValueError": "edge.modbus.errors",
    "UnknownPointError": "edge.modbus.errors",
    "PtyNullModem": "edge.modbus.nullmodem",
    "ModbusSimulator": "edge.modbus.simulator",
    "ModbusConnections": "edge.modbus.source",
    "ModbusMeterSource": "edge.modbus.source",
    "build_sources": "edge.modbus.source",
}

__all__ = sorted(_WHERE)


__getattr__ = exports(__name__, globals(), _WHERE)
