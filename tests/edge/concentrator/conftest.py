"""Concentrator test rig: DLMS and Modbus simulators on a shared manual clock, TOML configs,
and the concentrator run in-process against the real broker and ingest."""

from __future__ import annotations

from tests.fixtures.clock import ManualClock

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.concentrator import Concentrator
from edge.config import load_config
from edge.dlms import DlmsMeterSimulator, MeterModel, SecurityMode, ServerSecurity
from edge.modbus import ModbusSimulator, load_map
from gridwire.procs import ManagedProcess
from tests.fixtures.influx import stored_rows
from tests.fixtures.waiting import wait_for  # noqa: F401 - re-exported for the tests here

PASSWORD = "lls-secret-Zq81"
BLOCK_KEY = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
AUTH_KEY = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)
PERIOD = timedelta(minutes=15)




@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def dlms_simulator(clock: Callable[[], datetime], mode: SecurityMode, *, serial: str,
                   port: int = 0) -> DlmsMeterSimulator:
    security = ServerSecurity(mode=mode, password=PASSWORD.encode(), block_cipher_key=bytes.fromhex(BLOCK_KEY),
                              authentication_key=bytes.fromhex(AUTH_KEY), system_title=b"GRWSIM01")
    model = MeterModel(time_source=clock, drift_epoch=clock(), history_days=2, serial=serial)
    return DlmsMeterSimulator(model=model, security=security, port=port, name=serial)


@pytest.fixture
async def lls_sim(clock) -> AsyncIterator[DlmsMeterSimulator]:
    async with dlms_simulator(clock, SecurityMode.LLS, serial="GWLLS0000001") as sim:
        yield sim


@pytest.fixture
async def hls_sim(clock) -> AsyncIterator[DlmsMeterSimulator]:
    async with dlms_simulator(clock, SecurityMode.HLS_GMAC, serial="GWHLS0000001") as sim:
        yield sim


@pytest.fixture
async def modbus_sim() -> AsyncIterator[ModbusSimulator]:
    # A frozen clock keeps every simulated value at its base, so expected values are exact.
    async with ModbusSimulator(register_map=load_map("solar-inverter"), clock=lambda: 0.0) as sim:
        yield sim


def dlms_entry(meter_id: str, sim: DlmsMeterSimulator, *, interval: float = 0.2, timeout: float = 1.0) -> str:
    mode = sim.security.mode
    lines = ['[[meters]]', 'protocol = "dlms"', f'meter_id = "{meter_id}"', 'host = "127.0.0.1"',
             f'port = {sim.port}', f'security = "{mode.value}"', 'profile = "smr-5"',
             f'interval_s = {interval}', f'timeout_s = {timeout}']
    if mode is SecurityMode.LLS:
        lines.append(f'password = "{PASSWORD}"')
    if mode is SecurityMode.HLS_GMAC:
        lines += [f'block_cipher_key = "{BLOCK_KEY}"', f'authentication_key = "{AUTH_KEY}"']
    return "\n".join(lines) + "\n"


def modbus_entry(meter_id: str, sim: ModbusSimulator, *, interval: float = 0.2) -> str:
    return (f'[[meters]]\nprotocol = "modbus"\nmeterIndividualId = "{meter_id}"\nregisterMap = "solar-inverter"\n'
            f'interval = {interval}\ntimeout = 0.5\ntcp = {{ host = "127.0.0.1", port = {sim.port} }}\n')


def write_config(directory: Path, *, mqtt_port: int, meters: list[str], initial_hours: float = 1.0,
                 status_interval: float = 0.5, live_batch: str = "") -> Path:
    """A concentrator's TOML config; ``live_batch``: the ``[live_batch]`` table's lines, if any."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "concentrator.toml"
    path.write_text(
        'concentrator_id = "conc-1"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
        f'invocation_counters = "counters.sqlite"\nstatus_interval = {status_interval}\nconfirm_timeout = 5\n\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\nusername = "conc-1"\npassword = "conc-1-pw"\n\n'
        '[polling]\nretry_base_s = 0.05\nretry_cap_s = 0.3\nunhealthy_after = 2\njitter = 0.05\n\n'
        f'[backfill]\ninitial_hours = {initial_hours}\nlookahead_hours = 1\n\n'
        + (f'[live_batch]\n{live_batch}\n\n' if live_batch else "") + "\n".join(meters))
    return path


@dataclass
class Running:
    concentrator: Concentrator
    stop: asyncio.Event
    task: asyncio.Task

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


@pytest.fixture
async def run_concentrator() -> AsyncIterator[Callable[..., object]]:
    running: list[Running] = []

    async def start(config: Path, *, clock: Callable[[], datetime]) -> Running:
        concentrator = Concentrator.from_config(load_config(config), clock=clock)
        stop = asyncio.Event()
        task = asyncio.create_task(concentrator.run(stop), name="concentrator-under-test")
        run = Running(concentrator=concentrator, stop=stop, task=task)
        running.append(run)
        return run

    yield start
    for run in running:
        if not run.task.done():
            await run.finish()




def stored(influxd, db: str, meter: str, *, fields: str = '"OBIS_1.8.1", "historical"') -> list[tuple]:
    """(time, *fields) of the meter's stored points that have any of ``fields``; ``"reading_id"``
    is the point's id, stored (a full point) or derived from meter and time (a lean one)."""
    names = [name.strip().strip('"') for name in fields.split(",")]
    return [(datetime.fromtimestamp(stamp / 1e9, UTC), *values)
            for _, stamp, values in stored_rows(influxd, db, *names, meter=meter)]


def concentrator_process(config: Path) -> ManagedProcess:
    return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "concentrator", "run", str(config),
                                "--log-level", "INFO"], log=config.parent / "concentrator.log")
