"""The poller driving real Modbus sources against simulators over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from broker.backoff import Backoff
from broker.schemas import MeterReading
from edge.modbus import ModbusConnections, ModbusMeterConfig, ModbusSimulator, build_sources, load_map
from edge.polling import MeterPoller

BACKOFF = Backoff(initial=0.02, maximum=0.1, randomness=0.2)


class Collector:
    """The sink, with a condition so the test waits for readings rather than for time."""

    def __init__(self) -> None:
        self.readings: dict[str, list[MeterReading]] = {}
        self.condition = asyncio.Condition()

    async def __call__(self, reading: MeterReading) -> None:
        async with self.condition:
            self.readings.setdefault(reading.meter_id, []).append(reading)
            self.condition.notify_all()

    def count(self, meter_id: str) -> int:
        return len(self.readings.get(meter_id, []))

    async def until(self, predicate, timeout: float = 15.0) -> None:  # noqa: ANN001
        async with self.condition:
            await asyncio.wait_for(self.condition.wait_for(predicate), timeout)

    async def poke(self) -> None:
        async with self.condition:
            self.condition.notify_all()


@pytest.fixture
async def simulators() -> AsyncIterator[tuple[ModbusSimulator, ModbusSimulator]]:
    inverter = ModbusSimulator(register_map=load_map("solar-inverter"))
    relay = ModbusSimulator(register_map=load_map("load-control-relay"), unit_id=5)
    async with inverter, relay:
        yield inverter, relay


def _config(meter_id: str, map_name: str, port: int, unit_id: int = 1) -> ModbusMeterConfig:
    return ModbusMeterConfig.model_validate({
        "meterIndividualId": meter_id, "registerMap": map_name, "unitId": unit_id,
        "tcp": {"host": "127.0.0.1", "port": port}, "interval": 0.05, "timeout": 0.2,
    })


async def test_a_stopped_device_is_retried_marked_unhealthy_and_backfill_is_triggered(
        simulators: tuple[ModbusSimulator, ModbusSimulator]) -> None:
    inverter, relay = simulators
    sink = Collector()
    recovered: list[tuple[str, datetime, datetime]] = []

    async def on_recovered(meter_id: str, down_since: datetime, now: datetime) -> None:
        recovered.append((meter_id, down_since, now))
        await sink.poke()

    connections = ModbusConnections()
    sources = build_sources([_config("inv-1", "solar-inverter", inverter.port),
                             _config("relay-1", "load-control-relay", relay.port, unit_id=5)], connections)
    try:
        async with MeterPoller(sink=sink, on_recovered=on_recovered, backoff=BACKOFF, unhealthy_after=3) as poller:
            poller.add_all(sources)
            await sink.until(lambda: sink.count("inv-1") >= 2 and sink.count("relay-1") >= 2)
            last_good = sink.readings["inv-1"][-1].reading_time

            await inverter.stop()
            await sink.until(lambda: not poller.health_of("inv-1").healthy)
            relay_before = sink.count("relay-1")
            await sink.until(lambda: sink.count("relay-1") >= relay_before + 3)  # the other meter carries on
            down = poller.health_of("inv-1")
            assert down.consecutive_failures >= 3 and "ModbusCommunicationError" in (down.last_error or "")
            assert poller.health_of("relay-1").healthy
            outage_reads = sink.count("inv-1")

            await inverter.start()
            await sink.until(lambda: bool(recovered))
            await sink.until(lambda: sink.count("inv-1") > outage_reads)
    finally:
        connections.close()
    meter_id, down_since, now = recovered[0]
    assert meter_id == "inv-1"
    assert last_good < down_since < now
    back = sink.readings["inv-1"][-1]
    assert back.reading_time >= down_since.replace(microsecond=0) and poller.health_of("inv-1").healthy
    energies = [pv.numerical_value for r in sink.readings["inv-1"] for pv in r.property_values
                if pv.property_id == "OBIS_2.8.0"]
    assert energies == sorted(energies)  # the simulated counter only rises


async def test_commands_share_the_meter_lock_with_polling(simulators: tuple[ModbusSimulator, ModbusSimulator]) -> None:
    _, relay = simulators
    sink = Collector()
    connections = ModbusConnections()
    [source] = build_sources([_config("relay-1", "load-control-relay", relay.port, unit_id=5)], connections)
    try:
        async with MeterPoller(sink=sink) as poller:
            poller.add(source)
            await sink.until(lambda: sink.count("relay-1") >= 1)
            async with poller.exclusive("relay-1"):
                await source.write_point("relay_2", True)
            start = sink.count("relay-1")
            await sink.until(lambda: sink.count("relay-1") >= start + 2)
    finally:
        connections.close()
    latest = sink.readings["relay-1"][-1]
    state = {pv.property_id: pv.numerical_value for pv in latest.property_values}
    assert state["GW_relay.2.state"] == 1.0 and state["GW_relay.1.state"] == 0.0
    for reading in sink.readings["relay-1"]:
        # Stamped with its 50 ms poll slot, and the id derived from it (idempotent re-reads).
        assert reading.reading_time.microsecond % 50_000 == 0
        assert reading.meter_reading_identifier == MeterReading.derive_id("relay-1", reading.reading_time)


def test_config_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one of tcp and serial"):
        ModbusMeterConfig.model_validate({"meterIndividualId": "m", "registerMap": "solar-inverter"})
    serial = ModbusMeterConfig.model_validate({"meterIndividualId": "m", "registerMap": "solar-inverter",
                                               "serial": {"port": "/dev/ttyUSB0", "baudrate": 19200}})
    assert serial.bus_key == "serial:/dev/ttyUSB0"
