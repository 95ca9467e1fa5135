"""The P1 meter simulator: deterministic values, advancing registers, valid telegrams on a pty."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

import pytest

from edge.p1.framer import TelegramFramer
from edge.p1.simulator import MeterModel, P1Simulator
from edge.p1.telegram import parse_telegram

START = datetime(2024, 11, 22, 21, 59, 0, tzinfo=UTC)  # 22:59 CET: the low tariff starts at 23:00


def test_model_is_deterministic_and_registers_advance():
    model = MeterModel(start=START)
    values = [model.values_at(n) for n in range(120)]
    assert values == [MeterModel(start=START).values_at(n) for n in range(120)]
    assert [v.timestamp for v in values[:2]] == [START, START + timedelta(seconds=1)]
    totals = [v.delivered_t1 + v.delivered_t2 for v in values]
    assert all(b >= a for a, b in zip(totals, totals[1:]))
    assert totals[-1] > totals[0]
    assert values[0].tariff == 2 and values[60].tariff == 1
    # Energy is power integrated over time, split by tariff, rounded down to whole Wh.
    def kwh(joules: int) -> Decimal:
        return (Decimal(joules) / 3_600_000).quantize(Decimal("0.001"), rounding=ROUND_DOWN)
    at_120 = model.values_at(120)
    assert at_120.delivered_t2 == Decimal("2000") + kwh(sum(MeterModel.power_delivered_w(n) for n in range(60)))
    assert at_120.delivered_t1 == Decimal("1000") + kwh(sum(MeterModel.power_delivered_w(n) for n in range(60, 120)))
    gas = [v.gas[0] for v in values]
    assert gas[0].timestamp == datetime(2024, 11, 22, 21, 55, tzinfo=UTC)
    assert gas[-1].timestamp == datetime(2024, 11, 22, 22, 0, tzinfo=UTC)
    assert gas[-1].m3 - gas[0].m3 == Decimal("0.012")


@pytest.mark.parametrize("kwargs", [
    {"start": datetime(2024, 1, 1)},
    {"start": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=5)},
    {"start": START, "step": timedelta(milliseconds=500)},
])
def test_model_refuses_times_a_meter_cannot_send(kwargs):
    with pytest.raises(ValueError):
        MeterModel(**kwargs)


def test_simulator_refuses_bad_options():
    with pytest.raises(ValueError, match="corrupt_crc_every"):
        P1Simulator(corrupt_crc_every=0)
    with pytest.raises(RuntimeError):
        P1Simulator().port_path


async def test_simulator_writes_the_model_telegrams_to_its_pty():
    model = MeterModel(start=START)
    sim = P1Simulator(model=model, interval=0, count=5)
    path = sim.open()
    assert path.startswith("/dev/")
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    framer = TelegramFramer()
    frames: list[bytes] = []
    readable = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, readable.set)
    try:
        await sim.start()
        async with asyncio.timeout(10):
            while len(frames) < 5:
                await readable.wait()
                readable.clear()
                try:
                    frames += framer.feed(os.read(fd, 4096))
                except BlockingIOError:
                    continue
        await sim.done.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)
        await sim.stop()
    telegrams = [parse_telegram(f) for f in frames]
    assert [t.timestamp for t in telegrams] == [model.timestamp(n) for n in range(5)]
    assert [t.quantity("1-0:1.8.2").value for t in telegrams] == [model.values_at(n).delivered_t2 for n in range(5)]
    assert framer.stats.dropped_bytes == 0
