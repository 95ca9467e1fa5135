"""The adapter reads registers, clock and load profile from the simulator over real TCP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from broker.schemas import MeterReading
from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, InvocationCounterStore, MeterModel
from edge.dlms.meter_model import CLOCK_STATUS_DOUBTFUL, ENERGY_OBIS
from tests.edge.dlms.conftest import ManualClock

ENERGY_IDS = ("OBIS_1.8.1", "OBIS_1.8.2", "OBIS_2.8.1", "OBIS_2.8.2")


def _values(reading: MeterReading) -> dict[str, tuple[float | None, str | None]]:
    return {v.property_id: (v.numerical_value, v.unit) for v in reading.property_values}


def _expected_register_values(model: MeterModel) -> dict[str, tuple[float, str]]:
    expected = {pid: (model.register_value(obis) / 1000, "kWh") for pid, obis in zip(ENERGY_IDS, ENERGY_OBIS, strict=True)}
    expected["OBIS_1.7.0"] = (float(model.register_value("1.0.1.7.0.255")), "W")
    expected["OBIS_32.7.0"] = (model.register_value("1.0.32.7.0.255") / 10, "V")
    return expected


async def test_lls_reads_registers_with_scaler_and_unit(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                        clock: ManualClock,
                                                        config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter), time_source=clock)
    reading = await adapter.read_registers()
    assert reading.meter_id == "meter-0042"
    assert reading.reading_time == clock.now
    assert reading.meter_reading_identifier == MeterReading.derive_id("meter-0042", clock.now)
    assert reading.historical is False
    got = _values(reading)
    for pid, (value, unit) in _expected_register_values(model).items():
        assert got[pid][1] == unit
        assert got[pid][0] == pytest.approx(value, abs=1e-9), pid


async def test_scaler_and_unit_are_read_once_per_meter(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                       clock: ManualClock,
                                                       config_for: Callable[..., DlmsMeterConfig]) -> None:
    """Attribute 3 (scaler, unit) is read on the first poll only; later polls read attribute 2
    and still scale it (the adapter keeps the two values, not the register objects)."""
    adapter = DlmsMeterAdapter(config=config_for(lls_meter), time_source=clock)
    registers = len(adapter.profile.registers)
    frames: list[int] = []
    for _ in range(3):
        before = lls_meter.frames_served
        reading = await adapter.read_registers()
        frames.append(lls_meter.frames_served - before)
        got = _values(reading)
        for pid, (value, unit) in _expected_register_values(model).items():
            assert got[pid][1] == unit
            assert got[pid][0] == pytest.approx(value, abs=1e-9), pid
    assert frames[0] - frames[1] == registers
    assert frames[1] == frames[2]


async def test_lls_reads_clock_with_drift_and_status(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                     config_for: Callable[..., DlmsMeterConfig]) -> None:
    model.clock_offset = timedelta(seconds=-42)
    model.clock_status = CLOCK_STATUS_DOUBTFUL
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    meter_time, status = await adapter.read_clock()
    # COSEM date-time carries hundredths of a second.
    assert abs(meter_time - model.meter_now()) < timedelta(milliseconds=10)
    assert meter_time.tzinfo is not None
    assert status == CLOCK_STATUS_DOUBTFUL


async def test_hls_gmac_reads_registers(hls_meter: DlmsMeterSimulator, model: MeterModel, clock: ManualClock,
                                        counters: InvocationCounterStore,
                                        config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(hls_meter), counters=counters, time_source=clock)
    reading = await adapter.read_registers()
    got = _values(reading)
    assert got["OBIS_1.8.1"][0] == pytest.approx(model.register_value("1.0.1.8.1.255") / 1000)
    assert len(got) == 6
    assert hls_meter.guard.last_seen is not None


@pytest.mark.parametrize(("start", "end", "count"), [
    # Boundaries inclusive on both ends.
    (datetime(2026, 3, 10, 9, 0, tzinfo=UTC), datetime(2026, 3, 10, 10, 0, tzinfo=UTC), 5),
    # Off-boundary range: first capture at 09:15, last at 09:45.
    (datetime(2026, 3, 10, 9, 1, tzinfo=UTC), datetime(2026, 3, 10, 9, 59, tzinfo=UTC), 3),
    # Inside one period: nothing captured.
    (datetime(2026, 3, 10, 9, 1, tzinfo=UTC), datetime(2026, 3, 10, 9, 14, tzinfo=UTC), 0),
    # A whole day spans several GET blocks.
    (datetime(2026, 3, 9, 0, 0, tzinfo=UTC), datetime(2026, 3, 9, 23, 45, tzinfo=UTC), 96),
])
async def test_load_profile_by_range_returns_exact_intervals(
        lls_meter: DlmsMeterSimulator, model: MeterModel, config_for: Callable[..., DlmsMeterConfig],
        start: datetime, end: datetime, count: int) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    readings = await adapter.read_load_profile(start, end)
    assert len(readings) == count
    expected_times = [start.replace(minute=0) + timedelta(minutes=15) * i for i in range(100)]
    expected_times = [t for t in expected_times if start <= t <= end][:count]
    assert [r.reading_time for r in readings] == expected_times
    for reading in readings:
        assert reading.historical is True
        assert reading.meter_reading_identifier == MeterReading.derive_id("meter-0042", reading.reading_time)
        got = _values(reading)
        assert set(got) == set(ENERGY_IDS)
        for pid, obis in zip(ENERGY_IDS, ENERGY_OBIS, strict=True):
            assert got[pid] == (pytest.approx(model.energy_at(obis, reading.reading_time) / 1000), "kWh")


async def test_load_profile_is_limited_to_stored_history(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                         clock: ManualClock,
                                                         config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    readings = await adapter.read_load_profile(clock.now - timedelta(days=30), clock.now)
    # history_days=3: 3 * 96 captures, the newest at 12:00 (the clock says 12:07:30).
    assert len(readings) == 3 * 96
    assert readings[-1].reading_time == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
