"""The asyncio P1 reader over a real pty driven by the simulator, and over pyserial's loop://."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import serial

from devices.adapter_config import parse_adapter_config
from edge.p1.reader import P1PortError, P1Reader, read_p1
from edge.p1.simulator import MeterModel, P1Simulator
from edge.p1.telegram import frame_telegram
from tests.fixtures.waiting import wait_for

START = datetime(2024, 11, 22, 13, 29, 50, tzinfo=UTC)
CONFIG = parse_adapter_config({
    "meterIndividualId": "elec-1",
    "subMeters": [{"channel": 1, "meterIndividualId": "gas-1"}],
})
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
async def no_tasks_left_behind():
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == []


async def collect_until(iterator, done, *, timeout: float = 15.0) -> list:
    out = []
    async with asyncio.timeout(timeout), contextlib.aclosing(iterator) as items:
        async for item in items:
            out.append(item)
            if done(out):
                return out
    return out


async def test_reader_on_pty_counts_and_skips_bad_telegrams():
    model = MeterModel(start=START)
    # n = 3, 7, 11 have a bad CRC; n = 4, 9 are cut short; the last one (n = 12) is good.
    sim = P1Simulator(model=model, interval=0.002, count=13, corrupt_crc_every=4, truncate_every=5)
    good = [n for n in range(13) if sim.telegram_kind(n) == "ok"]
    assert good == [0, 1, 2, 5, 6, 8, 10, 12]
    last_time = model.timestamp(12)
    path = sim.open()
    try:
        async with P1Reader(port=path, config=CONFIG) as reader:
            await sim.start()
            readings = await collect_until(
                reader.readings(),
                lambda out: out[-1].meter_id == "elec-1" and out[-1].reading_time == last_time)
            stats = reader.stats
    finally:
        await sim.stop()

    elec = [r for r in readings if r.meter_id == "elec-1"]
    assert [r.reading_time for r in elec] == [model.timestamp(n) for n in good]
    for n, reading in zip(good, elec, strict=True):
        expected = model.values_at(n)
        values = {v.property_id: v.numerical_value for v in reading.property_values}
        assert values["OBIS_1.8.1"] == float(expected.delivered_t1)
        assert values["OBIS_1.8.2"] == float(expected.delivered_t2)
        assert values["OBIS_1.7.0"] == float(expected.power_delivered)
        assert values["OBIS_32.7.0"] == float(expected.voltages[0])
        assert reading.reading_time.utcoffset().total_seconds() == 3600
    # The gas meter reports every five minutes: one reading at 14:25, one at 14:30 local.
    gas = [r for r in readings if r.meter_id == "gas-1"]
    assert [r.reading_time for r in gas] == [datetime(2024, 11, 22, 13, 25, tzinfo=UTC),
                                             datetime(2024, 11, 22, 13, 30, tzinfo=UTC)]
    assert stats.telegrams_ok == len(good)
    assert stats.crc_errors == 3
    assert stats.truncated == 2
    assert stats.malformed == 0
    assert sim.corrupted == 3 and sim.truncated == 2 and sim.sent == 13


async def test_reader_over_loop_url_with_malformed_and_noise():
    port = serial.serial_for_url("loop://", timeout=0)
    model = MeterModel(start=START, gas_channel=None)
    sim = P1Simulator(model=model, interval=0, count=4, port=port)
    try:
        async with P1Reader(port=port, config=CONFIG, poll_interval=0.005) as reader:
            # Noise and a telegram with a good CRC but a broken line come before the meter's.
            port.write(b"\x00\xffnoise!" + frame_telegram("ISK5", ["this is no COSEM line"]))
            await sim.start()
            readings = await collect_until(reader.readings(), lambda out: len(out) == 4)
            assert reader.stats.malformed == 1
            assert reader.stats.telegrams_ok == 4
            assert reader.stats.dropped_bytes == len(b"\x00\xffnoise!")
        assert [r.reading_time for r in readings] == [model.timestamp(n) for n in range(4)]
        await sim.done.wait()
    finally:
        await sim.stop()
        port.close()


async def test_read_p1_function_and_port_failure_ends_iteration():
    model = MeterModel(start=START, gas_channel=None)
    sim = P1Simulator(model=model, interval=0, count=2)
    path = sim.open()
    iterator = read_p1(port=path, config=CONFIG)
    first = asyncio.ensure_future(anext(iterator))
    # The reader must be open before the first telegram: wait until the pty has a second opener.
    await _wait_for_reader_open(path)
    await sim.start()
    async with asyncio.timeout(10):
        assert (await first).reading_time == model.timestamp(0)
        assert (await anext(iterator)).reading_time == model.timestamp(1)
        await sim.done.wait()
        await sim.stop()
        with pytest.raises(P1PortError):
            await anext(iterator)
    await iterator.aclose()


async def _wait_for_reader_open(path: str) -> None:
    # A pty slave opened by the reader shows up in /proc as an fd of this process pointing at it.
    await wait_for(lambda: any(os.readlink(f"/proc/self/fd/{fd}") == path for fd in _fds()), timeout=5,
                   interval=0.005, what=f"the reader to open {path}")


def _fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            os.readlink(f"/proc/self/fd/{fd}")
            out.append(fd)
    return out


async def test_bad_port_raises_p1_port_error():
    with pytest.raises(P1PortError, match="cannot open"):
        async with P1Reader(port="/nonexistent/tty"):
            pass


async def test_readings_need_a_config():
    port = serial.serial_for_url("loop://", timeout=0)
    async with P1Reader(port=port) as reader:
        with pytest.raises(ValueError, match="adapter config"):
            await anext(reader.readings())
    port.close()


def test_cli_simulator_process_and_gridwire_p1_read(tmp_path):
    from typer.testing import CliRunner

    from gridwire.cli import app

    config = tmp_path / "adapter.yaml"
    config.write_text(CONFIG.to_yaml())
    code = "from edge.p1.cli import sim_p1; sim_p1(interval=0.05, count=400)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/")
        result = CliRunner().invoke(app, ["p1", "read", path, "--config", str(config), "--count", "3"])
    finally:
        proc.terminate()
        proc.wait(10)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    assert all('"meterIndividualId": "elec-1"' in line or '"meterIndividualId": "gas-1"' in line for line in lines)
