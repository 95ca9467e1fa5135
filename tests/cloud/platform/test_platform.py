"""The assembled platform: the full app on uvicorn, the core and domain processes and a light fleet.

Everything real: Mosquitto with the project's ACLs, the registry on SQLite and PostgreSQL
(migrated by the app's lifespan), JWT bearer tokens, the fleet account answering commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from broker.session import Message, MqttSession
from cloud.auth import issue_token
from cloud.api.process import create_platform_app
from cloud.platform import PlatformSettings, process_runner
from cloud.registry import OrganisationCreate, PlatformRole, Registry
from cloud.settings import DatabaseSettings, InfluxSettings, MqttSettings
from edge.devices.service import run_lights
from tests.cloud.core.harness import Inbox, json_of, serve, session_for
from tests.fixtures.mosquitto import CLOUD, FLEET, MosquittoServer

SECRET = "platform-test-secret-0123456789abcdef"
OPERATOR, ORG_A, ORG_B = "operator", "org-a", "org-b"
LIGHT = "light-1"


def bearer(org: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret=SECRET, org=org, scopes=scopes)}"}


def platform_settings(broker: MosquittoServer, url: str, **changes: object) -> PlatformSettings:
    """Every process's settings for the test broker (as the cloud account) and database ``url``."""
    values = {"jwt_secret": SECRET, "mqtt": cloud_login(broker), "database": DatabaseSettings(url=url),
              "influx": InfluxSettings(create_database=False), **changes}
    return PlatformSettings(**values)


def cloud_login(broker: MosquittoServer, **changes: object) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port, username=CLOUD.username, password=CLOUD.password,
                        **changes)


@asynccontextmanager
async def serve_with_lifespan(settings: PlatformSettings) -> AsyncIterator[str]:
    """The platform app on a real uvicorn (lifespan on) at a free port; yields its base URL."""
    async with serve(create_platform_app(settings), lifespan="on") as base_url:
        yield base_url



@asynccontextmanager
async def platform_process(name: str, settings: PlatformSettings) -> AsyncIterator[None]:
    """One of the platform's processes (``process_runner``) in this event loop, ready when entered."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(process_runner(name, settings, ready=ready)(stop), name=name)
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        yield
    finally:
        stop.set()
        await task


@dataclass
class Running:
    http: httpx.AsyncClient
    app_inbox: Inbox
    watch: Inbox


@asynccontextmanager
async def running_platform(broker: MosquittoServer, url: str) -> AsyncIterator[Running]:
    settings = platform_settings(broker, url, database=DatabaseSettings(url=url, pool_size=2))
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    async with serve_with_lifespan(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        # The registry is migrated now (the app's lifespan did it): bootstrap the first administrator.
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=OPERATOR, name="Operator",
                                                               role=PlatformRole.ADMIN))
        readies = {name: asyncio.Event() for name in ("core", "domain", "fleet")}
        tasks += [asyncio.create_task(process_runner(name, settings, ready=readies[name])(stop), name=name)
                  for name in ("core", "domain")]
        tasks.append(asyncio.create_task(run_lights(
            stop, count=3, host=broker.host, port=broker.port, username=FLEET.username, password=FLEET.password,
            client_id="test-fleet", ready=readies["fleet"]), name="fleet"))
        try:
            async with asyncio.timeout(15):
                for ready in readies.values():
                    await ready.wait()
            app_session = session_for(broker, "app.org-a")
            watch_session = session_for(broker, CLOUD.username)
            async with app_session, watch_session:
                app_inbox, watch = Inbox(), Inbox()
                await app_session.subscribe("app/org-a/#", app_inbox.handler)
                for topic in ("domain/+/request/+", "core/request/+", "device/+/command"):
                    await watch_session.subscribe(topic, watch.handler)
                yield Running(http=http, app_inbox=app_inbox, watch=watch)
        finally:
            stop.set()
            await asyncio.gather(*tasks)


def seen(inbox: Inbox, prefix: str) -> list[Message]:
    return [m for topic, ms in inbox.messages.items() if topic.startswith(prefix) for m in ms]


async def test_light_switched_through_the_assembled_platform(mosquitto: MosquittoServer, registry_url: str) -> None:
    async with running_platform(mosquitto, registry_url) as p:
        http = p.http
        assert (await http.get("/v1/installation/devices")).status_code == 401
        for org in (ORG_A, ORG_B):
            made = await http.post("/v1/admin/organisations", json={"identification": org, "name": org.upper()},
                                   headers=bearer(OPERATOR))
            assert made.status_code == 201, made.text
        added = await http.post("/v1/installation/devices", headers=bearer(ORG_A), json={
            "identification": LIGHT, "deviceType": "STREET_LIGHT", "protocol": "MQTT"})
        assert added.status_code == 201, added.text

        accepted = await http.post(f"/v1/publiclighting/devices/{LIGHT}/light", json={"on": True, "dimLevel": 60},
                                   headers=bearer(ORG_A))
        assert accepted.status_code == 202, accepted.text
        correlation = accepted.json()["correlationId"]
        note = await p.app_inbox.wait_for(lambda m: json_of(m).get("correlationId") == correlation, timeout=15)
        assert note.topic == "app/org-a/publiclighting/setLight"
        assert json_of(note)["status"] == "SUCCEEDED" and json_of(note)["result"]["on"] is True
        result = await http.get(accepted.json()["resultUrl"], headers=bearer(ORG_A))
        assert result.status_code == 200
        assert result.json()["status"] == "SUCCEEDED" and result.json()["result"]["dimLevel"] == 60
        assert sorted(c["name"] for c in result.json()["commands"]) == ["set_dim_level", "set_relay"]
        # Another organisation cannot read it either.
        assert (await http.get(accepted.json()["resultUrl"], headers=bearer(ORG_B))).status_code == 404

        refused = await http.post(f"/v1/publiclighting/devices/{LIGHT}/light", json={"on": False},
                                  headers=bearer(ORG_B))
        assert refused.status_code == 403 and "needs one of" in refused.json()["detail"]
        # A later request from the same API session arrives after anything org-b's would have.
        marker = await http.post(f"/v1/publiclighting/devices/{LIGHT}/status", headers=bearer(ORG_A))
        assert marker.status_code == 202
        marker_id = marker.json()["correlationId"]
        await p.watch.wait_for(lambda m: json_of(m).get("correlationId") == marker_id, timeout=10)
        status_note = await p.app_inbox.wait_for(lambda m: json_of(m).get("correlationId") == marker_id, timeout=15)
        assert json_of(status_note)["result"]["on"] is True
        assert not seen(p.watch, "domain/publiclighting/request/org-b") and not seen(p.watch, "core/request/org-b")
        commands = [json.loads(m.payload) for m in seen(p.watch, f"device/{LIGHT}/command")]
        assert sorted(c["name"] for c in commands) == ["get_light_status", "set_dim_level", "set_relay"]
        assert {c["organisation"] for c in commands} == {ORG_A}

        # Meter-data access is decided by the registry: org-a owns the device, org-b holds nothing.
        assert (await http.get(f"/v1/devices/{LIGHT}/clockDrift", headers=bearer(ORG_A))).json() == []
        assert (await http.get(f"/v1/devices/{LIGHT}/clockDrift", headers=bearer(ORG_B))).status_code == 403
        # An admin scope in a USER organisation's token grants nothing; the registry's administrator sees it.
        assert (await http.get(f"/v1/devices/{LIGHT}/clockDrift", headers=bearer(ORG_B, "admin"))).status_code == 403
        assert (await http.get(f"/v1/devices/{LIGHT}/clockDrift", headers=bearer(OPERATOR))).status_code == 200

        # Many lights at once: one request per light, all authorised first, all or nothing.
        for light in ("light-2", "light-3"):
            made = await http.post("/v1/installation/devices", headers=bearer(ORG_A), json={
                "identification": light, "deviceType": "STREET_LIGHT", "protocol": "MQTT"})
            assert made.status_code == 201, made.text
        lights = [LIGHT, "light-2", "light-3"]
        denied = await http.post("/v1/publiclighting/lights", json={"deviceIds": lights, "on": False},
                                 headers=bearer(ORG_B))
        assert denied.status_code == 403 and all(light in denied.json()["detail"] for light in lights)
        bulk = await http.post("/v1/publiclighting/lights", json={"deviceIds": lights, "on": False},
                               headers=bearer(ORG_A))
        assert bulk.status_code == 202, bulk.text
        accepted_for = {r["deviceId"]: r["correlationId"] for r in bulk.json()["requests"]}
        assert sorted(accepted_for) == sorted(lights)
        for light, correlation_id in accepted_for.items():
            done = await p.app_inbox.wait_for(lambda m, c=correlation_id: json_of(m).get("correlationId") == c,
                                              timeout=15)
            assert json_of(done)["deviceId"] == light and json_of(done)["result"]["on"] is False
        assert not seen(p.watch, "domain/publiclighting/request/org-b")
