"""Clock setting and disconnect/reconnect change the simulated meter's state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, InvocationCounterStore, MeterModel
from tests.edge.dlms.conftest import ManualClock


async def test_set_clock_moves_meter_time(lls_meter: DlmsMeterSimulator, model: MeterModel, clock: ManualClock,
                                          config_for: Callable[..., DlmsMeterConfig]) -> None:
    model.clock_offset = timedelta(minutes=-7)
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    target = datetime(2026, 3, 10, 12, 30, 0, tzinfo=UTC)
    await adapter.set_clock(target)
    assert model.meter_now() == target
    clock.advance(timedelta(seconds=90))
    meter_time, _ = await adapter.read_clock()
    assert meter_time == target + timedelta(seconds=90)


async def test_disconnect_and_reconnect_change_output_state(hls_meter: DlmsMeterSimulator, model: MeterModel,
                                                            counters: InvocationCounterStore,
                                                            config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(hls_meter), counters=counters)
    assert await adapter.read_output_state() is True
    assert await adapter.disconnect() is False
    assert model.output_state is False
    reading = await adapter.read_registers()
    power = next(v for v in reading.property_values if v.property_id == "OBIS_1.7.0")
    assert power.numerical_value == 0
    assert await adapter.reconnect() is True
    assert model.output_state is True


async def test_session_shares_one_association(lls_meter: DlmsMeterSimulator,
                                              config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    async with adapter.session():
        await adapter.read_registers()
        await adapter.read_clock()
        await adapter.read_output_state()
    # One AARQ + scaler reads + values + clock + output state + release, all on one connection.
    assert lls_meter.connections_accepted == 1
