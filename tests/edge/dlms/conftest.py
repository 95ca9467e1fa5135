"""Fixtures for the DLMS tests: a controllable clock, simulators on free ports, adapter configs."""

from __future__ import annotations

from tests.fixtures.clock import ManualClock

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from edge.dlms import (
    DlmsMeterConfig,
    DlmsMeterSimulator,
    InvocationCounterStore,
    MeterModel,
    SecurityMode,
    ServerSecurity,
)

PASSWORD = "lls-secret-9"
BLOCK_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AUTH_KEY = bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")
SERVER_TITLE = b"GRWSIM01"




@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 10, 12, 7, 30, tzinfo=UTC))


@pytest.fixture
def model(clock: ManualClock) -> MeterModel:
    return MeterModel(time_source=clock, drift_epoch=clock.now, history_days=3, serial="GWTEST000042")


def server_security(mode: SecurityMode) -> ServerSecurity:
    return ServerSecurity(mode=mode, password=PASSWORD.encode(), block_cipher_key=BLOCK_KEY,
                          authentication_key=AUTH_KEY, system_title=SERVER_TITLE)


@pytest.fixture
async def lls_meter(model: MeterModel) -> AsyncIterator[DlmsMeterSimulator]:
    async with DlmsMeterSimulator(model=model, security=server_security(SecurityMode.LLS), name="lls-meter") as sim:
        yield sim


@pytest.fixture
async def hls_meter(model: MeterModel) -> AsyncIterator[DlmsMeterSimulator]:
    async with DlmsMeterSimulator(model=model, security=server_security(SecurityMode.HLS_GMAC),
                                  name="hls-meter") as sim:
        yield sim


@pytest.fixture
def counters(tmp_path: Path) -> InvocationCounterStore:
    return InvocationCounterStore(tmp_path / "dlms-counters.sqlite")


def make_config(sim: DlmsMeterSimulator, **overrides: object) -> DlmsMeterConfig:
    """An adapter config matching the simulator's security, with overrides."""
    fields: dict[str, object] = {
        "meter_id": "meter-0042", "host": "127.0.0.1", "port": sim.port, "security": sim.security.mode,
        "password": SecretStr(PASSWORD), "block_cipher_key": SecretStr(BLOCK_KEY.hex()),
        "authentication_key": SecretStr(AUTH_KEY.hex()), "timeout_s": 2.0, "profile": "smr-5",
    }
    fields.update(overrides)
    return DlmsMeterConfig.model_validate(fields)


@pytest.fixture
def config_for() -> Callable[..., DlmsMeterConfig]:
    return make_config
