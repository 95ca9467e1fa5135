"""The admin and installation routes end to end over ASGI, on both registry backends.

A tiny app includes the routers, puts the real Registry in ``app.state`` and overrides the
``current_org`` dependency with a header read, standing in for the JWT check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from cloud.accounts.service import AccountService
from cloud.accounts.store import AccountStore
from cloud.api.deps import current_org
from cloud.api.errors import install_error_table
from cloud.api.routes import admin, installation
from cloud.registry import DeviceNotFound, FunctionGroup, LifecycleState, Registry

METER = {"identification": "m-1", "deviceType": "SMART_METER", "protocol": "DLMS", "protocolVersion": "6.0",
         "concentratorId": "dc-1", "model": "AM550", "location": {"latitude": 52.1, "longitude": 5.1},
         "grid": {"feeder": "F1", "substation": "SS-N"}}
CONCENTRATOR = {"identification": "dc-1", "deviceType": "CONCENTRATOR", "protocol": "MQTT"}


def include_routes(app: FastAPI) -> None:
    for area in (admin, installation):
        app.include_router(area.router)


async def _org_from_header(request: Request) -> str:
    return request.headers["x-test-org"]


@pytest.fixture
async def client(registry: Registry, orgs: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_table(app)
    include_routes(app)
    app.state.registry = registry
    # Broker accounts recorded in the registry; no broker to apply them to (none are made here).
    app.state.accounts = AccountService(AccountStore(registry.engine), None, ca_dir=None, crl_file=None,
                                        broker_pid_file=None)
    app.dependency_overrides[current_org] = _org_from_header
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        yield http


def as_(org: str) -> dict[str, str]:
    return {"x-test-org": org}


async def install(client: httpx.AsyncClient) -> None:
    """The utility installs a concentrator and a meter behind it."""
    assert (await client.post("/v1/installation/devices", json=CONCENTRATOR, headers=as_("utility"))).status_code == 201
    assert (await client.post("/v1/installation/devices", json=METER, headers=as_("utility"))).status_code == 201


async def test_unconfigured_auth_refuses(registry: Registry) -> None:
    app = FastAPI()
    install_error_table(app)
    include_routes(app)
    app.state.registry = registry
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.get("/v1/installation/devices")
    assert response.status_code == 401


async def test_add_device_makes_caller_owner(client: httpx.AsyncClient, registry: Registry) -> None:
    await install(client)
    body = (await client.get("/v1/installation/devices/m-1", headers=as_("utility"))).json()
    assert body["identification"] == "m-1" and body["concentratorId"] == "dc-1"
    assert body["grid"]["feeder"] == "F1" and body["state"] == "REGISTERED"
    assert await registry.groups("utility", "m-1") == {FunctionGroup.OWNER}
    listed = (await client.get("/v1/installation/devices", params={"deviceType": "SMART_METER"},
                               headers=as_("utility"))).json()
    assert [d["identification"] for d in listed] == ["m-1"]
    assert (await client.get("/v1/installation/devices", headers=as_("app"))).json() == []


async def test_duplicate_device_is_409(client: httpx.AsyncClient) -> None:
    await install(client)
    response = await client.post("/v1/installation/devices", json=METER, headers=as_("utility"))
    assert response.status_code == 409
    assert "m-1" in response.json()["detail"]


async def test_bad_input_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    bad = {**CONCENTRATOR, "deviceType": "TOASTER"}
    response = await client.post("/v1/installation/devices", json=bad, headers=as_("utility"))
    assert response.status_code == 422
    assert ["body", "deviceType"] in [e["loc"] for e in response.json()["detail"]]
    bad_id = {**CONCENTRATOR, "identification": "dc/1/#"}
    response = await client.post("/v1/installation/devices", json=bad_id, headers=as_("utility"))
    assert ["body", "identification"] in [e["loc"] for e in response.json()["detail"]]
    # A meter behind a concentrator nobody registered.
    response = await client.post("/v1/installation/devices", json=METER, headers=as_("utility"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "concentratorId"]
    response = await client.patch("/v1/installation/devices/m-1", json={"firmwareVersion": ""},
                                  headers=as_("utility"))
    assert response.status_code == 422


async def test_unknown_device_is_404(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/v1/installation/devices/ghost"),
                         ("PATCH", "/v1/installation/devices/ghost"),
                         ("POST", "/v1/installation/devices/ghost/decommission"),
                         ("GET", "/v1/admin/devices/ghost/authorisations")):
        response = await client.request(method, path, json={"model": "x"} if method == "PATCH" else None,
                                        headers=as_("utility"))
        assert response.status_code == 404, (method, path)
        assert "ghost" in response.json()["detail"]


async def test_unauthorised_org_gets_403_and_nothing_changes(client: httpx.AsyncClient, registry: Registry) -> None:
    await install(client)
    before = await registry.get_device("m-1")
    response = await client.patch("/v1/installation/devices/m-1", json={"model": "hacked"}, headers=as_("app"))
    assert response.status_code == 403
    assert "INSTALLATION" in response.json()["detail"] and "UPDATE_DEVICE" in response.json()["detail"]
    response = await client.post("/v1/installation/devices/m-1/decommission", headers=as_("app"))
    assert response.status_code == 403
    response = await client.post("/v1/admin/devices/m-1/authorisations",
                                 json={"organisation": "app", "functionGroup": "OWNER"}, headers=as_("app"))
    assert response.status_code == 403
    # Installing behind someone else's concentrator is refused too.
    other = {**METER, "identification": "m-2"}
    response = await client.post("/v1/installation/devices", json=other, headers=as_("app"))
    assert response.status_code == 403 and "dc-1" in response.json()["detail"]
    assert await registry.get_device("m-1") == before
    assert await registry.groups("app", "m-1") == frozenset()
    with pytest.raises(DeviceNotFound):
        await registry.get_device("m-2")
    # Unknown callers are refused before anything is looked at.
    response = await client.get("/v1/installation/devices", headers=as_("stranger"))
    assert response.status_code == 403 and "stranger" in response.json()["detail"]


async def test_update_and_decommission(client: httpx.AsyncClient) -> None:
    await install(client)
    response = await client.patch("/v1/installation/devices/m-1",
                                  json={"firmwareVersion": "2.0", "state": "INSTALLED"}, headers=as_("utility"))
    assert response.status_code == 200
    assert response.json()["firmwareVersion"] == "2.0" and response.json()["state"] == "INSTALLED"
    response = await client.post("/v1/installation/devices/m-1/decommission", headers=as_("utility"))
    assert response.status_code == 200 and response.json()["state"] == LifecycleState.DECOMMISSIONED
    again = await client.post("/v1/installation/devices/m-1/decommission", headers=as_("utility"))
    assert again.status_code == 200 and again.json()["state"] == "DECOMMISSIONED"
    response = await client.patch("/v1/installation/devices/m-1", json={"model": "x"}, headers=as_("utility"))
    assert response.status_code == 403 and "decommissioned" in response.json()["detail"]


async def test_owner_grants_and_revokes(client: httpx.AsyncClient, registry: Registry) -> None:
    await install(client)
    grant = {"organisation": "app", "functionGroup": "MONITORING"}
    response = await client.post("/v1/admin/devices/m-1/authorisations", json=grant, headers=as_("utility"))
    assert response.status_code == 201 and response.json()["functionGroup"] == "MONITORING"
    response = await client.post("/v1/admin/devices/m-1/authorisations", json=grant, headers=as_("utility"))
    assert response.status_code == 409
    response = await client.post("/v1/admin/devices/m-1/authorisations",
                                 json={"organisation": "nobody", "functionGroup": "AD_HOC"}, headers=as_("utility"))
    assert response.status_code == 404
    response = await client.post("/v1/admin/devices/m-1/authorisations",
                                 json={"organisation": "app", "functionGroup": "KING"}, headers=as_("utility"))
    assert response.status_code == 422
    assert ["body", "functionGroup"] in [e["loc"] for e in response.json()["detail"]]
    assert await registry.meters_for_org("app") == {"m-1"}
    # The same answer asked about some meters only (the readings route's question).
    assert await registry.readable_meters("app", ["m-1", "no-such-meter"]) == {"m-1"}
    listed = (await client.get("/v1/admin/devices/m-1/authorisations", headers=as_("ops"))).json()
    assert [(a["organisation"], a["functionGroup"]) for a in listed] == [("app", "MONITORING"), ("utility", "OWNER")]
    # MONITORING lets the app see the device but not change it.
    assert (await client.get("/v1/installation/devices/m-1", headers=as_("app"))).status_code == 200
    response = await client.delete("/v1/admin/devices/m-1/authorisations/app/MONITORING", headers=as_("utility"))
    assert response.status_code == 204
    response = await client.delete("/v1/admin/devices/m-1/authorisations/app/MONITORING", headers=as_("utility"))
    assert response.status_code == 404
    assert await registry.meters_for_org("app") == set()
    assert await registry.readable_meters("app", ["m-1"]) == set()


async def test_organisations_are_for_admins(client: httpx.AsyncClient) -> None:
    new = {"identification": "lights", "name": "Street Lights Ltd", "webhookUrl": "https://hooks.example.org/x",
           "webhookSecret": "x" * 24}
    response = await client.post("/v1/admin/organisations", json=new, headers=as_("utility"))
    assert response.status_code == 403 and "administrator" in response.json()["detail"]
    response = await client.post("/v1/admin/organisations", json=new, headers=as_("ops"))
    assert response.status_code == 201
    assert response.json()["hasWebhookSecret"] is True and "webhookSecret" not in response.json()
    assert (await client.post("/v1/admin/organisations", json=new, headers=as_("ops"))).status_code == 409
    response = await client.post("/v1/admin/organisations", json={**new, "identification": "z", "webhookUrl": "nope"},
                                 headers=as_("ops"))
    assert response.status_code == 422 and ["body", "webhookUrl"] in [e["loc"] for e in response.json()["detail"]]
    listed = (await client.get("/v1/admin/organisations", headers=as_("ops"))).json()
    assert [o["identification"] for o in listed] == ["app", "lights", "ops", "utility"]
    assert (await client.get("/v1/admin/organisations/utility", headers=as_("utility"))).status_code == 200
    assert (await client.get("/v1/admin/organisations/app", headers=as_("utility"))).status_code == 403
    response = await client.patch("/v1/admin/organisations/lights", json={"enabled": False}, headers=as_("ops"))
    assert response.status_code == 200 and response.json()["enabled"] is False
    response = await client.get("/v1/installation/devices", headers=as_("lights"))
    assert response.status_code == 403 and "disabled" in response.json()["detail"]
