"""Device secrets through the assembled platform: written sealed, never answered in clear, OWNER
only; with no sealing key they are refused, and the API refuses to start without its key while
the registry holds secrets."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from broker.sealing import KeyRing, SealingError, new_key
from cloud.registry.secrets import DeviceSecrets
from cloud.registry import FunctionGroup
from tests.cloud.api.platform_rig import platform
from tests.cloud.platform.test_platform import platform_settings
from tests.fixtures.mosquitto import MosquittoServer
from cloud.api.process import create_platform_app

METER = {"identification": "m-1", "deviceType": "SMART_METER", "protocol": "DLMS"}
AUTH = "00112233445566778899aabbccddeeff"
KEY = new_key("k1")


async def test_secrets_are_written_sealed_and_never_answered(mosquitto: MosquittoServer, registry_url: str,
                                                             caplog) -> None:
    async with platform(platform_settings(mosquitto, registry_url, secrets_key=KEY), registry_url) as rig:
        http = rig.http
        a = await rig.org("org-a")
        assert (await http.post("/v1/installation/devices", json=METER, headers=a)).status_code == 201
        put = await http.put("/v1/installation/devices/m-1/secrets/authentication_key", headers=a,
                             json={"value": AUTH})
        assert put.status_code == 200, put.text
        assert put.json() == {"name": "authentication_key", "keyId": "k1", "pending": False, "changeId": None,
                              "updatedAt": put.json()["updatedAt"]}
        listed = await http.get("/v1/installation/devices/m-1/secrets", headers=a)
        assert listed.status_code == 200 and [s["name"] for s in listed.json()] == ["authentication_key"]
        assert AUTH not in listed.text and AUTH not in put.text
        async with rig.registry.engine.connect() as conn:
            at_rest = (await conn.execute(text("SELECT active FROM device_secret"))).scalar_one()
        assert at_rest.startswith("sealed:v1:k1:") and AUTH not in at_rest

        bad = await http.put("/v1/installation/devices/m-1/secrets/authentication_key", headers=a,
                             json={"value": "zz" * 16})
        assert bad.status_code == 422 and "must be 32 hex digits" in bad.json()["detail"]
        assert "zz" * 16 not in bad.text

        # Another organisation, even holding every other group on the meter: refused, nothing changed.
        b = await rig.org("org-b")
        for group in (FunctionGroup.INSTALLATION, FunctionGroup.CONFIGURATION, FunctionGroup.MANAGEMENT):
            await rig.registry.grant("m-1", "org-b", group)
        refused = await http.put("/v1/installation/devices/m-1/secrets/authentication_key", headers=b,
                                 json={"value": "ff" * 16})
        assert refused.status_code == 403 and "UPDATE_KEY" in refused.json()["detail"]
        assert (await http.get("/v1/installation/devices/m-1/secrets", headers=b)).status_code == 403
        async with rig.registry.engine.connect() as conn:
            assert (await conn.execute(text("SELECT active FROM device_secret"))).scalar_one() == at_rest
    assert AUTH not in caplog.text


async def test_no_sealing_key_refuses_secrets_and_a_start_with_secrets_stored(mosquitto: MosquittoServer,
                                                                              registry_url: str) -> None:
    async with platform(platform_settings(mosquitto, registry_url), registry_url) as rig:
        a = await rig.org("org-a")
        assert (await rig.http.post("/v1/installation/devices", json=METER, headers=a)).status_code == 201
        refused = await rig.http.put("/v1/installation/devices/m-1/secrets/password", headers=a,
                                     json={"value": "pw-12345"})
        assert refused.status_code == 409 and "GRIDWIRE_SECRETS_KEY" in refused.json()["detail"]
        await DeviceSecrets(rig.registry.engine, KeyRing.parse(KEY)).set("m-1", "password", "pw-12345")
    for settings, reason in ((platform_settings(mosquitto, registry_url), "GRIDWIRE_SECRETS_KEY is not set"),
                             (platform_settings(mosquitto, registry_url, secrets_key=new_key("k1")),
                              "does not open with key 'k1'")):
        app = create_platform_app(settings)
        with pytest.raises(SealingError, match=reason):
            async with app.router.lifespan_context(app):
                pass
    with pytest.raises(SealingError, match="is 4 bytes"):
        create_platform_app(platform_settings(mosquitto, registry_url, secrets_key="k1:AAAAAA"))
