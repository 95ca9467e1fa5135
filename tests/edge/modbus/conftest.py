"""Fixtures for the Modbus tests: simulators on free ports and a check that no task leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.modbus import ModbusSimulator, RegisterMap, load_map

ALL_TYPES = Path(__file__).with_name("all_types.yaml")


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    # Give cancelled tasks one loop turn to finish before calling them leaked.
    for _ in range(5):
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leftover:
            break
        await asyncio.sleep(0)
    assert not leftover, f"tasks left running: {[t.get_name() for t in leftover]}"


@pytest.fixture
def all_types_map() -> RegisterMap:
    return load_map(ALL_TYPES)


@pytest.fixture
async def all_types_sim(all_types_map: RegisterMap) -> AsyncIterator[ModbusSimulator]:
    async with ModbusSimulator(register_map=all_types_map) as simulator:
        yield simulator
