"""Modbus meters as poller sources: shared clients per connection and the MeterSource glue."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from broker.lean import MeterReading
from devices.modbus.register_map import RegisterMap, load_map
from edge.modbus.adapter import ModbusAdapter, ModbusClient
from edge.modbus.config import ModbusMeterConfig
from edge.modbus.mapping import poll_instant
from edge.modbus.plan import Value


class ModbusConnections:
    """Owns one pymodbus client per physical connection, shared by the meters behind it."""

    def __init__(self) -> None:
        self._clients: dict[str, ModbusClient] = {}

    def client_for(self, config: ModbusMeterConfig) -> ModbusClient:
        key = config.connection_key
        if key not in self._clients:
            # retries=0 and no auto-reconnect: the poller owns retry policy and backoff.
            if config.tcp is not None:
                self._clients[key] = AsyncModbusTcpClient(
                    config.tcp.host, port=config.tcp.port, timeout=config.timeout, retries=0, reconnect_delay=0)
            else:
                assert config.serial is not None
                serial = config.serial
                self._clients[key] = AsyncModbusSerialClient(
                    serial.port, baudrate=serial.baudrate, parity=serial.parity, stopbits=serial.stopbits,
                    bytesize=serial.bytesize, timeout=config.timeout, retries=0, reconnect_delay=0)
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class ModbusMeterSource:
    """A Modbus meter as the poller sees it (implements :class:`edge.polling.MeterSource`)."""

    protocol = "modbus"

    def __init__(self, *, config: ModbusMeterConfig, adapter: ModbusAdapter,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.adapter = adapter
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def meter_id(self) -> str:
        return self.config.meter_id

    @property
    def bus(self) -> str:
        return self.config.bus_key

    @property
    def interval(self) -> float:
        return self.config.interval

    async def read(self) -> list[MeterReading]:
        """One reading stamped with the poll slot it belongs to (see ``poll_instant``)."""
        stamp = poll_instant(self._clock(), self.config.interval)
        return [await self.adapter.read(stamp)]

    async def write_point(self, name: str, value: Value) -> None:
        """Command the device; take the poller's ``exclusive(meter_id)`` around this."""
        await self.adapter.write_point(name, value)


def build_sources(configs: Iterable[ModbusMeterConfig], connections: ModbusConnections, *,
                  maps: dict[str, RegisterMap] | None = None) -> list[ModbusMeterSource]:
    """Sources for every configured meter; maps are loaded once per name."""
    loaded = dict(maps or {})
    sources = []
    for config in configs:
        if config.register_map not in loaded:
            loaded[config.register_map] = load_map(config.register_map)
        adapter = ModbusAdapter(register_map=loaded[config.register_map], meter_id=config.meter_id,
                                client=connections.client_for(config), unit_id=config.unit_id)
        sources.append(ModbusMeterSource(config=config, adapter=adapter))
    return sources
