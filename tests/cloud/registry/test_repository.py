"""The Registry on SQLite and PostgreSQL: devices, organisations, authorisations, routing, counters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cloud.registry import (
    AuthorisationExists,
    DeviceCreate,
    DeviceDecommissioned,
    DeviceExists,
    DeviceFunction,
    DeviceNotFound,
    DeviceType,
    DeviceUpdate,
    FunctionGroup,
    GridPosition,
    InvalidStateChange,
    LifecycleState,
    Location,
    OrganisationCreate,
    OrganisationExists,
    OrganisationNotFound,
    OrganisationUpdate,
    Protocol,
    Registry,
    Route,
)

G = FunctionGroup
F = DeviceFunction


def meter(ident: str, *, concentrator: str | None = "dc-1", feeder: str | None = "F1") -> DeviceCreate:
    return DeviceCreate(identification=ident, device_type=DeviceType.SMART_METER, protocol=Protocol.DLMS,
                        protocol_version="6.0", concentrator_id=concentrator, model="AM550",
                        firmware_version="1.2.3", location=Location(latitude=52.09, longitude=5.12,
                                                                     address="Stationsplein 1, Utrecht"),
                        grid=GridPosition(feeder=feeder, transformer="T7", substation="SS-North"))


CONCENTRATOR = DeviceCreate(identification="dc-1", device_type=DeviceType.CONCENTRATOR, protocol=Protocol.MQTT)


async def test_create_get_and_list_devices(registry: Registry, orgs: dict[str, str]) -> None:
    created = await registry.create_device(meter("m-1"), owner="utility")
    assert created.identification == "m-1"
    assert created.state is LifecycleState.REGISTERED
    assert created.created_at.tzinfo is not None
    got = await registry.get_device("m-1")
    assert got.location == Location(latitude=52.09, longitude=5.12, address="Stationsplein 1, Utrecht")
    assert got.grid == GridPosition(feeder="F1", transformer="T7", substation="SS-North")
    assert got.protocol is Protocol.DLMS and got.protocol_version == "6.0"
    assert got.created_at == created.created_at

    await registry.create_device(CONCENTRATOR, owner="utility")
    await registry.create_device(meter("m-2", feeder="F2"), owner="utility")
    await registry.create_device(meter("m-3", concentrator="dc-9"))
    await registry.grant("m-3", "app", G.MONITORING)

    assert [d.identification for d in await registry.list_devices()] == ["dc-1", "m-1", "m-2", "m-3"]
    assert [d.identification for d in await registry.list_devices(organisation="utility")] == ["dc-1", "m-1", "m-2"]
    assert [d.identification for d in await registry.list_devices(organisation="app")] == ["m-3"]
    assert [d.identification for d in await registry.list_devices(device_type=DeviceType.CONCENTRATOR)] == ["dc-1"]
    assert [d.identification for d in await registry.list_devices(concentrator_id="dc-1")] == ["m-1", "m-2"]
    assert [d.identification for d in await registry.list_devices(feeder="F2")] == ["m-2"]
    assert [d.identification for d in await registry.list_devices(limit=2, offset=1)] == ["m-1", "m-2"]


async def test_duplicates_and_unknowns_raise(registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"), owner="utility")
    with pytest.raises(DeviceExists):
        await registry.create_device(meter("m-1"))
    with pytest.raises(OrganisationExists):
        await registry.add_organisation(OrganisationCreate(identification="utility", name="again"))
    with pytest.raises(DeviceNotFound):
        await registry.get_device("nope")
    with pytest.raises(OrganisationNotFound):
        await registry.create_device(meter("m-2"), owner="nobody")
    # The failed create with an unknown owner left no device behind.
    with pytest.raises(DeviceNotFound):
        await registry.get_device("m-2")


async def test_update_device(registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"), owner="utility")
    updated = await registry.update_device("m-1", DeviceUpdate(firmware_version="2.0.0", concentrator_id="dc-2",
                                                               state=LifecycleState.INSTALLED))
    assert updated.firmware_version == "2.0.0"
    assert updated.concentrator_id == "dc-2"
    assert updated.state is LifecycleState.INSTALLED
    assert updated.model == "AM550"  # untouched fields stay
    assert updated.updated_at >= updated.created_at
    with pytest.raises(InvalidStateChange):  # decommissioning has its own operation
        await registry.update_device("m-1", DeviceUpdate(state=LifecycleState.DECOMMISSIONED))
    cleared = await registry.update_device("m-1", DeviceUpdate(location=None))
    assert cleared.location is None
    assert (await registry.route("m-1")).concentrator_id == "dc-2"
    with pytest.raises(DeviceNotFound):
        await registry.update_device("nope", DeviceUpdate(model="x"))


async def test_decommission(registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"), owner="utility")
    await registry.grant("m-1", "app", G.MONITORING)
    done = await registry.decommission("m-1")
    assert done.state is LifecycleState.DECOMMISSIONED
    assert (await registry.decommission("m-1")).state is LifecycleState.DECOMMISSIONED
    with pytest.raises(DeviceDecommissioned):
        await registry.update_device("m-1", DeviceUpdate(model="new"))
    with pytest.raises(DeviceDecommissioned):
        await registry.update_device("m-1", DeviceUpdate(state=LifecycleState.ACTIVE))
    with pytest.raises(DeviceDecommissioned):
        await registry.route("m-1")
    # History stays readable; commands do not.
    assert await registry.authorised("app", "m-1", F.READ_METER_DATA)
    assert await registry.authorised("utility", "m-1", F.GET_DEVICE)
    assert not await registry.authorised("utility", "m-1", F.DISCONNECT)
    reason = (await registry.permission("utility", "m-1", F.DISCONNECT)).reason
    assert "decommissioned" in reason
    assert await registry.meters_for_org("app") == {"m-1"}


async def test_grant_revoke_and_check(registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"), owner="utility")
    assert await registry.authorised("utility", "m-1", F.UPDATE_KEY)
    assert not await registry.authorised("app", "m-1", F.GET_PERIODIC_METER_READS)

    grant = await registry.grant("m-1", "app", G.MONITORING)
    assert (grant.device, grant.organisation, grant.function_group) == ("m-1", "app", G.MONITORING)
    with pytest.raises(AuthorisationExists):
        await registry.grant("m-1", "app", G.MONITORING)
    await registry.grant("m-1", "app", G.SCHEDULING)
    assert await registry.groups("app", "m-1") == {G.MONITORING, G.SCHEDULING}
    assert await registry.authorised("app", "m-1", F.GET_PERIODIC_METER_READS)
    assert await registry.authorised("app", "m-1", F.SET_TARIFF_SCHEDULE)
    assert not await registry.authorised("app", "m-1", F.DISCONNECT)
    denied = await registry.permission("app", "m-1", F.DISCONNECT)
    assert "AD_HOC" in denied.reason and "MONITORING" in denied.reason
    assert [(a.organisation, a.function_group) for a in await registry.authorisations("m-1")] == [
        ("app", G.MONITORING), ("app", G.SCHEDULING), ("utility", G.OWNER)]

    assert await registry.revoke("m-1", "app", G.MONITORING)
    assert not await registry.revoke("m-1", "app", G.MONITORING)
    assert not await registry.authorised("app", "m-1", F.GET_PERIODIC_METER_READS)
    with pytest.raises(DeviceNotFound):
        await registry.grant("nope", "app", G.AD_HOC)
    with pytest.raises(OrganisationNotFound):
        await registry.grant("m-1", "nobody", G.AD_HOC)
    # Unknown parties are simply not authorised.
    assert not await registry.authorised("nobody", "m-1", F.GET_DEVICE)
    assert not await registry.authorised("utility", "nope", F.GET_DEVICE)


async def test_disabled_organisation_may_do_nothing(registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"), owner="utility")
    await registry.update_organisation("utility", OrganisationUpdate(enabled=False))
    assert not await registry.authorised("utility", "m-1", F.GET_DEVICE)
    assert await registry.meters_for_org("utility") == set()
    assert "disabled" in (await registry.permission("utility", "m-1", F.GET_DEVICE)).reason


async def test_meters_for_org(registry: Registry, orgs: dict[str, str]) -> None:
    for ident in ("m-1", "m-2", "m-3", "m-4"):
        await registry.create_device(meter(ident))
    await registry.grant("m-1", "app", G.OWNER)
    await registry.grant("m-2", "app", G.AD_HOC)
    await registry.grant("m-3", "app", G.MONITORING)
    await registry.grant("m-3", "app", G.AD_HOC)
    await registry.grant("m-4", "app", G.FIRMWARE)
    await registry.grant("m-4", "utility", G.MONITORING)
    assert await registry.meters_for_org("app") == {"m-1", "m-2", "m-3"}
    assert await registry.meters_for_org("utility") == {"m-4"}
    assert await registry.meters_for_org("nobody") == set()


async def test_route(registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"))
    await registry.create_device(DeviceCreate(identification="light-1", device_type=DeviceType.STREET_LIGHT,
                                              protocol=Protocol.MQTT))
    assert await registry.route("m-1") == Route(device_id="m-1", concentrator_id="dc-1",
                                                protocol=Protocol.DLMS, protocol_version="6.0")
    assert await registry.route("light-1") == Route(device_id="light-1", concentrator_id=None,
                                                    protocol=Protocol.MQTT, protocol_version=None)
    with pytest.raises(DeviceNotFound):
        await registry.route("nope")


async def test_communication_counters(registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"))
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    await registry.record_communication("m-1", success=False, at=t0, reason="timeout after 3 retries")
    await registry.record_communication("m-1", success=False, at=t0 + timedelta(minutes=1))
    device = await registry.get_device("m-1")
    assert (device.comm_success_count, device.comm_failure_count, device.consecutive_failures) == (0, 2, 2)
    assert device.last_seen is None and device.state is LifecycleState.REGISTERED
    assert device.last_failure_at == t0 + timedelta(minutes=1)

    # Concurrent successes from several consumers: none may be lost.
    await asyncio.gather(*(registry.record_communication("m-1", success=True, at=t0 + timedelta(minutes=2))
                           for _ in range(10)))
    device = await registry.get_device("m-1")
    assert (device.comm_success_count, device.comm_failure_count, device.consecutive_failures) == (10, 2, 0)
    assert device.last_seen == t0 + timedelta(minutes=2)
    assert device.state is LifecycleState.ACTIVE
    with pytest.raises(DeviceNotFound):
        await registry.record_communication("nope", success=True)


async def test_organisations(registry: Registry) -> None:
    added = await registry.add_organisation(OrganisationCreate(
        identification="utility", name="City Utility", webhook_url="https://hooks.example.org/gw",
        webhook_secret="s" * 32))
    assert added.has_webhook_secret and added.webhook_url == "https://hooks.example.org/gw"
    assert "secret" not in added.model_dump_json(by_alias=True).lower().replace("haswebhooksecret", "")
    changed = await registry.update_organisation("utility", OrganisationUpdate(name="Utility B.V.", webhook_secret=None))
    assert changed.name == "Utility B.V." and not changed.has_webhook_secret and changed.enabled
    assert [o.identification for o in await registry.list_organisations()] == ["utility"]
    with pytest.raises(OrganisationNotFound):
        await registry.get_organisation("nobody")


def test_registry_needs_exactly_one_of_engine_and_url() -> None:
    with pytest.raises(ValueError):
        Registry()


async def test_successes_counted_together_make_registered_and_installed_devices_active(registry: Registry,
                                                                                      orgs: dict[str, str]) -> None:
    from cloud.core.communication import SuccessLog

    for ident in ("m-1", "m-2", "m-3"):
        await registry.create_device(meter(ident), owner="utility")
    await registry.update_device("m-2", DeviceUpdate(state=LifecycleState.INSTALLED))
    await registry.decommission("m-3")
    successes = SuccessLog(registry.engine)
    # Arriving together, they share one write (several devices: one statement executed for many rows).
    try:
        await asyncio.gather(successes.success("m-1"), successes.success("m-2"), successes.success("m-3"),
                             successes.success("m-1"))
    finally:
        await successes.close()  # the connection its writer keeps (cloud.held)
    found = {d: await registry.get_device(d) for d in ("m-1", "m-2", "m-3")}
    assert [(found[d].state, found[d].comm_success_count) for d in ("m-1", "m-2", "m-3")] == [
        (LifecycleState.ACTIVE, 2), (LifecycleState.ACTIVE, 1), (LifecycleState.DECOMMISSIONED, 1)]
    assert all(found[d].last_seen is not None and found[d].consecutive_failures == 0 for d in found)


async def test_a_permission_with_its_device_is_what_permission_and_get_device_answer(
        registry: Registry, orgs: dict[str, str]) -> None:
    await registry.create_device(meter("m-1"), owner="utility")
    await registry.create_device(meter("m-2"), owner="utility")
    await registry.grant("m-1", "app", G.MONITORING)
    await registry.grant("m-1", "app", G.SCHEDULING)
    await registry.decommission("m-2")

    async def both(org: str, device: str, function: DeviceFunction) -> None:
        decision, found = await registry.permitted_device(org, device, function)
        assert decision == await registry.permission(org, device, function)
        if org in orgs and device in ("m-1", "m-2"):
            assert found == await registry.get_device(device)
        else:
            assert found is None

    for org in ("utility", "app", "nobody"):
        for device in ("m-1", "m-2", "nope"):
            for function in (F.GET_DEVICE, F.DISCONNECT, F.GET_PERIODIC_METER_READS, F.SET_TARIFF_SCHEDULE):
                await both(org, device, function)
    allowed, found = await registry.permitted_device("app", "m-1", F.GET_PERIODIC_METER_READS)
    assert allowed.allowed and found is not None and found.grid == GridPosition(feeder="F1", transformer="T7",
                                                                                 substation="SS-North")
    await registry.update_organisation("utility", OrganisationUpdate(enabled=False))
    await both("utility", "m-1", F.GET_DEVICE)
    assert not (await registry.permitted_device("utility", "m-1", F.GET_DEVICE))[0].allowed
