"""Configuration models for Modbus meters on a concentrator (one entry per device)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.config_lean import modbus_connection_key, modbus_target_rules


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ModbusTcpTarget(_Config):
    """A device (or an RTU gateway) reachable over Modbus TCP."""

    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)


class ModbusSerialTarget(_Config):
    """A device on an RS-485 line speaking Modbus RTU."""

    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class ModbusMeterConfig(_Config):
    """One Modbus meter the concentrator polls.

    ``bus`` defaults to the connection (``tcp:host:port`` or ``serial:/dev/...``): meters on
    one bus share one client and the poller's per-bus concurrency bound.
    """

    meter_id: str = Field(alias="meterIndividualId", min_length=1, max_length=128, pattern=r"^[^/+#\x00]+$")
    register_map: str = Field(alias="registerMap", min_length=1, description="map name or path to a YAML file")
    unit_id: int = Field(default=1, alias="unitId", ge=0, le=247)
    tcp: ModbusTcpTarget | None = None
    serial: ModbusSerialTarget | None = None
    interval: float = Field(default=900.0, gt=0, description="seconds between reads")
    bus: str | None = None
    timeout: float = Field(default=2.0, gt=0, description="seconds to wait for an answer")

    @model_validator(mode="after")
    def _one_target(self) -> ModbusMeterConfig:
        modbus_target_rules(self)
        return self

    @property
    def connection_key(self) -> str:
        """Identifies the physical connection; meters with the same key share a client."""
        return modbus_connection_key(self)

    @property
    def bus_key(self) -> str:
        return self.bus or self.connection_key
