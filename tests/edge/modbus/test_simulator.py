"""The simulator: values advance with its clock, the shipped maps serve, the CLI runs."""

from __future__ import annotations

import asyncio
import math

import pytest
from pymodbus.client import AsyncModbusTcpClient

from edge.modbus import ModbusAdapter, ModbusSimulator, load_map
from edge.modbus.cli import serve
from tests.fixtures.procs import free_port


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_values_follow_the_clock_over_the_wire() -> None:
    clock = ManualClock()
    inverter = load_map("solar-inverter")
    async with ModbusSimulator(register_map=inverter, clock=clock) as simulator:
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=1, retries=0, reconnect_delay=0)
        adapter = ModbusAdapter(register_map=inverter, meter_id="inv", client=client)
        try:
            first = await adapter.read_values()
            clock.now += 15.0  # a quarter of the power wave's period
            second = await adapter.read_values()
        finally:
            client.close()
    assert first["energy_total"] == pytest.approx(12345.67)
    assert second["energy_total"] == pytest.approx(12345.67 + 0.15)  # 0.01 kWh/s for 15 s
    assert first["ac_power"] == pytest.approx(3.0)
    assert second["ac_power"] == pytest.approx(4.5)  # mean + amplitude at a quarter period
    assert second["voltage"] == pytest.approx(230.0 + 2.0 * math.sin(math.pi), abs=0.1)
    assert first["status"] == 2


async def test_energy_counters_never_decrease() -> None:
    clock = ManualClock()
    simulator = ModbusSimulator(register_map=load_map("load-control-relay"), clock=clock)
    seen = []
    for step in range(50):
        clock.now += step * 0.7
        seen.append(simulator.value("energy_import"))
    assert seen == sorted(seen) and seen[-1] > seen[0]


async def test_relay_state_mirrors_the_written_coil() -> None:
    relay = load_map("load-control-relay")
    async with ModbusSimulator(register_map=relay) as simulator:
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=1, retries=0, reconnect_delay=0)
        adapter = ModbusAdapter(register_map=relay, meter_id="relay", client=client)
        try:
            await adapter.write_point("relay_3", True)
            await adapter.write_point("switch_delay", 30)
            values = await adapter.read_values()
        finally:
            client.close()
    assert [values[f"relay_{i}_state"] for i in range(1, 5)] == [False, False, True, False]
    assert values["switch_delay"] == 30


async def test_the_cli_serves_until_cancelled() -> None:
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(map_name="load-control-relay", host="127.0.0.1", port=port, unit_id=3, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
    try:
        await client.connect()
        response = await client.read_input_registers(0, count=1, device_id=3)
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not response.isError()
    assert abs(response.registers[0] - 800) <= 40  # 8.00 A plus what the wave moved since start
