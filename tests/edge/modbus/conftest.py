"""Fixtures for the Modbus tests: simulators on free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.modbus import ModbusSimulator, RegisterMap, load_map

ALL_TYPES = Path(__file__).with_name("all_types.yaml")




@pytest.fixture
def all_types_map() -> RegisterMap:
    return load_map(ALL_TYPES)


@pytest.fixture
async def all_types_sim(all_types_map: RegisterMap) -> AsyncIterator[ModbusSimulator]:
    async with ModbusSimulator(register_map=all_types_map) as simulator:
        yield simulator
