"""Modbus RTU over a pty null modem: the serial client and server without hardware."""

from __future__ import annotations

import asyncio

import pytest

from broker.schemas import MeterReading
from edge.modbus import ModbusConnections, ModbusMeterConfig, ModbusSimulator, build_sources, load_map
from edge.modbus.nullmodem import PtyNullModem
from edge.polling import MeterPoller


async def test_rtu_meter_is_polled_and_commanded_over_a_serial_line() -> None:
    readings: list[MeterReading] = []
    got = asyncio.Event()
    limited = asyncio.Event()

    async def sink(reading: MeterReading) -> None:
        readings.append(reading)
        got.set()
        if any(pv.property_id == "GW_inverter.activePowerLimit" and pv.numerical_value == 55.0
               for pv in reading.property_values):
            limited.set()

    async with PtyNullModem() as cable:
        simulator = ModbusSimulator(register_map=load_map("solar-inverter"), serial_port=cable.end_a, unit_id=3)
        async with simulator:
            config = ModbusMeterConfig.model_validate({
                "meterIndividualId": "rtu-1", "registerMap": "solar-inverter", "unitId": 3, "interval": 0.05,
                "timeout": 1.0, "serial": {"port": cable.end_b, "baudrate": 19200}})
            connections = ModbusConnections()
            [source] = build_sources([config], connections)
            try:
                async with MeterPoller(sink=sink) as poller:
                    poller.add(source)
                    await asyncio.wait_for(got.wait(), 10)
                    async with poller.exclusive("rtu-1"):
                        await source.write_point("power_limit", 55)
                    await asyncio.wait_for(limited.wait(), 10)
                    assert poller.health_of("rtu-1").healthy
            finally:
                connections.close()
    assert source.bus == f"serial:{cable.end_b}"
    values = {pv.property_id: pv for pv in readings[-1].property_values}
    assert values["OBIS_2.8.0"].numerical_value == pytest.approx(12345.67, abs=0.5)
    assert values["GW_inverter.status"].text_value == "MPPT"
    assert values["GW_inverter.activePowerLimit"].numerical_value == 55.0
