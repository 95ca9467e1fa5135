"""The core's one-query authorisation check gives the registry's answer, reason and all.

Both read the facts (organisation, device state, held groups) their own way and let
:func:`cloud.registry.functions.authorise` decide; this checks that they read the same facts,
for every function, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cloud.core.access import accesses, permission, permissions
from cloud.migrations import migrate
from cloud.registry import (
    DeviceCreate,
    DeviceFunction,
    DeviceType,
    FunctionGroup,
    LifecycleState,
    OrganisationCreate,
    OrganisationUpdate,
    Protocol,
    Registry,
)

G = FunctionGroup
# Held groups per (organisation, device); every device is in a different lifecycle state.
GRANTS = {
    ("on", "registered"): [G.AD_HOC],
    ("on", "installed"): [G.MONITORING, G.SCHEDULING],
    ("on", "active"): [G.OWNER],
    ("on", "retired"): [G.MONITORING, G.FIRMWARE],
    ("off", "active"): [G.OWNER],
    ("off", "retired"): [G.AD_HOC],
}
STATES = {"registered": LifecycleState.REGISTERED, "installed": LifecycleState.INSTALLED,
          "active": LifecycleState.ACTIVE, "retired": LifecycleState.ACTIVE, "bare": LifecycleState.ACTIVE}
DEVICES = [*STATES, "missing"]


@pytest.fixture
async def registry(registry_url: str) -> AsyncIterator[Registry]:
    await migrate(registry_url)
    async with Registry(url=registry_url) as registry:
        for org in ("on", "off"):
            await registry.add_organisation(OrganisationCreate(identification=org, name=org))
        for device, state in STATES.items():
            await registry.create_device(DeviceCreate(identification=device, device_type=DeviceType.SMART_METER,
                                                      protocol=Protocol.DLMS, state=state))
        for (org, device), groups in GRANTS.items():
            for group in groups:
                await registry.grant(device, org, group)
        await registry.decommission("retired")
        await registry.update_organisation("off", OrganisationUpdate(enabled=False))
        yield registry


@pytest.mark.parametrize("organisation", ["on", "off", "ghost"])
async def test_one_query_check_agrees_with_the_registry(registry: Registry, organisation: str) -> None:
    for function in DeviceFunction:
        expected = {d: await registry.permission(organisation, d, function) for d in DEVICES}
        assert await permissions(registry, organisation, DEVICES, function) == expected, function
        assert await permission(registry, organisation, "installed", function) == expected["installed"]


async def test_routes_come_only_with_a_registered_device_of_an_enabled_organisation(registry: Registry) -> None:
    found = await accesses(registry, "on", DEVICES, DeviceFunction.GET_STATUS)
    assert {d for d, a in found.items() if a.route is not None} == set(STATES)
    assert all(a.route is None for a in (await accesses(registry, "off", DEVICES, DeviceFunction.GET_STATUS)).values())


async def test_checks_asked_together_share_queries_and_each_gets_its_answer(registry: Registry) -> None:
    asked = [(org, device, function) for org in ("on", "off", "ghost") for device in DEVICES
             for function in (DeviceFunction.GET_STATUS, DeviceFunction.SET_LIGHT, DeviceFunction.DISCONNECT)]
    expected = [await registry.permission(*check) for check in asked]
    assert await asyncio.gather(*(permission(registry, *check) for check in asked)) == expected
