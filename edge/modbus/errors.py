"""Errors of the Modbus adapter: communication (retried), protocol (not), and bad commands."""

from __future__ import annotations

from broker.errors import Invalid
from edge.polling.errors import MeterCommunicationError, MeterProtocolError

# Modbus exception codes that mean "try again later" rather than "this request is wrong".
TRANSIENT_EXCEPTION_CODES = frozenset({5, 6, 0x0A, 0x0B})  # acknowledge, busy, gateway x2

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
    5: "acknowledge (busy with a long request)", 6: "device busy", 8: "memory parity error",
    0x0A: "gateway path unavailable", 0x0B: "gateway target did not respond",
}


class ModbusCommunicationError(MeterCommunicationError):
    """No answer, a dropped connection or a gateway reporting the device unreachable."""


class ModbusProtocolError(MeterProtocolError):
    """The device answered with a Modbus exception such as illegal data address."""

    def __init__(self, message: str, *, meter_id: str | None = None, exception_code: int | None = None) -> None:
        super().__init__(message, meter_id=meter_id)
        self.exception_code = exception_code


class ModbusPointError(Invalid):
    """A command the adapter refuses before sending anything."""


class UnknownPointError(ModbusPointError):
    """The register map has no point of that name."""


class PointNotWritableError(ModbusPointError):
    """The point exists but the map does not allow writing it."""


class PointValueError(ModbusPointError):
    """The value has the wrong type or lies outside what the point accepts."""
