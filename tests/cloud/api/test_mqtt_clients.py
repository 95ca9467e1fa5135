"""``/v1/organisations/{org}/mqttClients`` on the real API and a real Mosquitto with dynamic
security: an organisation's app gets credentials that log in over the TLS password listener
(the one compose publishes for apps), fenced to its organisation, then is disabled (cut at
once) and deleted, with no broker restart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from broker.session import ConnectError, MqttSession, NegativeAckError, TlsSettings
from cloud.registry import DeviceCreate, DeviceType, OrganisationCreate, PlatformRole, Protocol, Registry
from tests.cloud.api.test_provisioning import ADMIN, OTHER, bearer, platform
from tests.fixtures.mosquitto import TlsMosquitto
from tests.fixtures.waiting import wait_for

ORG = "utility-a"


@pytest.fixture
async def api(tls_mosquitto: TlsMosquitto, tmp_path: Path) -> AsyncIterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite'}"
    async with platform(tls_mosquitto, url, pki_dir=tls_mosquitto.pki_dir, app_broker_host="127.0.0.1",
                        app_broker_port=tls_mosquitto.tls_password_port) as base:
        async with Registry(url=url) as registry:
            await registry.add_organisation(OrganisationCreate(identification=ADMIN, name="Operator",
                                                               role=PlatformRole.ADMIN))
            for org in (ORG, OTHER):
                await registry.add_organisation(OrganisationCreate(identification=org, name=org))
            await registry.create_device(DeviceCreate(identification="lamp-9", device_type=DeviceType.STREET_LIGHT,
                                                      protocol=Protocol.MQTT), owner=ORG)
            await registry.create_device(DeviceCreate(identification="meter-9", device_type=DeviceType.SMART_METER,
                                                      protocol=Protocol.DLMS), owner=ORG)
        yield base


def over_tls(broker: TlsMosquitto, credentials: dict, **options: object) -> MqttSession:
    assert credentials["broker"] == {"host": "127.0.0.1", "port": broker.tls_password_port, "tls": True}
    return MqttSession(client_id=f"app-{uuid.uuid4().hex[:6]}", host="127.0.0.1", port=broker.tls_password_port,
                       username=credentials["username"], password=credentials["password"], session_expiry=0,
                       tls=TlsSettings(ca_file=str(broker.ca.cert_file)), connect_timeout=3, **options)


async def _nothing(_message: object) -> None:
    return None


async def test_an_organisations_app_gets_credentials_fenced_to_its_organisation(api, tls_mosquitto):
    async with httpx.AsyncClient(base_url=api, timeout=10, headers=bearer(ORG)) as http:
        made = await http.post(f"/v1/organisations/{ORG}/mqttClients", json={"name": "billing"})
        assert made.status_code == 201, made.text
        credentials = made.json()
        assert credentials["username"] == f"app.{ORG}.billing" and credentials["kind"] == "app"
        async with over_tls(tls_mosquitto, credentials) as app:
            await app.subscribe(f"app/{ORG}/#", _nothing)
            await app.publish(f"domain/publiclighting/request/{ORG}", b"{}")
            with pytest.raises(NegativeAckError) as refused:
                await app.subscribe("app/other/#", _nothing)
            assert refused.value.reason_code == 0x87
            with pytest.raises(NegativeAckError) as refused:
                await app.publish(f"concentrator/app.{ORG}.billing/status", b"{}")
            assert refused.value.reason_code == 0x87
            listed = await http.get(f"/v1/organisations/{ORG}/mqttClients")
            assert [(c["username"], c["disabled"]) for c in listed.json()] == [(f"app.{ORG}.billing", False)]
            assert "password" not in listed.text
            disabled = await http.patch(f"/v1/organisations/{ORG}/mqttClients/app.{ORG}.billing",
                                        json={"disabled": True})
            assert disabled.status_code == 200 and disabled.json()["disabled"] is True
            await wait_for(lambda: not app.connected.is_set(), timeout=10, what="the app cut off")
        with pytest.raises(ConnectError):
            await _connect_once(over_tls(tls_mosquitto, credentials))
        enabled = await http.patch(f"/v1/organisations/{ORG}/mqttClients/app.{ORG}.billing", json={"disabled": False})
        assert enabled.status_code == 200
        async with over_tls(tls_mosquitto, credentials) as app:
            await app.publish(f"domain/publiclighting/request/{ORG}", b"{}")
        deleted = await http.delete(f"/v1/organisations/{ORG}/mqttClients/app.{ORG}.billing")
        assert deleted.status_code == 204
        assert (await http.get(f"/v1/organisations/{ORG}/mqttClients")).json() == []
        with pytest.raises(ConnectError):
            await _connect_once(over_tls(tls_mosquitto, credentials))


async def test_an_mqtt_native_device_gets_its_own_subtree(api, tls_mosquitto):
    async with httpx.AsyncClient(base_url=api, timeout=10, headers=bearer(ORG)) as http:
        made = await http.post(f"/v1/organisations/{ORG}/mqttClients", json={"device": "lamp-9"})
        assert made.status_code == 201, made.text
        async with over_tls(tls_mosquitto, made.json()) as lamp:
            await lamp.subscribe("device/lamp-9/command", _nothing)
            with pytest.raises(NegativeAckError) as refused:
                await lamp.subscribe("device/lamp-1/command", _nothing)
            assert refused.value.reason_code == 0x87
        meter = await http.post(f"/v1/organisations/{ORG}/mqttClients", json={"device": "meter-9"})
        assert meter.status_code == 403 and "not an MQTT-native device" in meter.json()["detail"]


async def test_another_organisation_may_not_touch_them(api):
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        made = await http.post(f"/v1/organisations/{ORG}/mqttClients", json={"name": "app1"}, headers=bearer(ORG))
        assert made.status_code == 201
        for call in (http.post(f"/v1/organisations/{ORG}/mqttClients", json={"name": "x"}, headers=bearer(OTHER)),
                     http.get(f"/v1/organisations/{ORG}/mqttClients", headers=bearer(OTHER)),
                     http.delete(f"/v1/organisations/{ORG}/mqttClients/app.{ORG}.app1", headers=bearer(OTHER))):
            assert (await call).status_code == 403
        # Another organisation's device, or one of its own accounts named through another org: refused.
        lamp = await http.post(f"/v1/organisations/{OTHER}/mqttClients", json={"device": "lamp-9"},
                               headers=bearer(OTHER))
        assert lamp.status_code == 403, lamp.text
        wrong_org = await http.delete(f"/v1/organisations/{OTHER}/mqttClients/app.{ORG}.app1", headers=bearer(OTHER))
        assert wrong_org.status_code == 404
        bad = await http.post(f"/v1/organisations/{ORG}/mqttClients", json={"name": "a/#"}, headers=bearer(ORG))
        assert bad.status_code == 422
        both = await http.post(f"/v1/organisations/{ORG}/mqttClients", json={"name": "a", "device": "lamp-9"},
                               headers=bearer(ORG))
        assert both.status_code == 422
        listed = await http.get(f"/v1/organisations/{ORG}/mqttClients", headers=bearer(ADMIN))
        assert [c["username"] for c in listed.json()] == [f"app.{ORG}.app1"]


async def _connect_once(session: MqttSession) -> None:
    try:
        await session.connect()
    finally:
        await session.close()
