"""Organisations' API keys on the assembled platform: made, listed, limited, expired, revoked.

Each refusal is checked with what it must not have changed.
"""

from __future__ import annotations

from datetime import timedelta

from cloud.registry import FunctionGroup
from cloud.registry.apikeys import ApiKeys
from tests.cloud.api.platform_rig import key, platform
from tests.cloud.platform.test_platform import platform_settings
from tests.fixtures.mosquitto import MosquittoServer

METER = {"identification": "m-1", "deviceType": "SMART_METER", "protocol": "DLMS"}


async def test_keys_are_made_listed_limited_and_revoked(mosquitto: MosquittoServer, registry_url: str) -> None:
    async with platform(platform_settings(mosquitto, registry_url), registry_url) as rig:
        http = rig.http
        a = await rig.org("org-a")
        assert (await http.post("/v1/installation/devices", json=METER, headers=a)).status_code == 201

        limited = await http.post("/v1/organisations/org-a/apiKeys", headers=a, json={
            "name": "dashboard", "functionGroups": ["MONITORING"],
            "expiresAt": (rig.clock() + timedelta(hours=1)).isoformat()})
        assert limited.status_code == 201, limited.text
        body = limited.json()
        assert body["functionGroups"] == ["MONITORING"] and body["token"].startswith("gw_")
        dashboard = key(body["token"])
        listed = (await http.get("/v1/organisations/org-a/apiKeys", headers=a)).json()
        assert sorted(k["name"] for k in listed) == ["dashboard", "main"]
        assert all("token" not in k for k in listed)

        # Within its groups it works; outside them it is refused, and nothing is made.
        assert (await http.get("/v1/installation/devices/m-1", headers=dashboard)).status_code == 200
        refused = await http.post("/v1/installation/devices", headers=dashboard,
                                  json={**METER, "identification": "m-2"})
        assert refused.status_code == 403 and "limited to [MONITORING]" in refused.json()["detail"]
        assert (await http.get("/v1/installation/devices/m-2", headers=a)).status_code == 404
        refused = await http.patch("/v1/installation/devices/m-1", headers=dashboard, json={"model": "X"})
        assert refused.status_code == 403
        assert (await http.get("/v1/installation/devices/m-1", headers=a)).json().get("model") is None
        # A limited key cannot make keys (no way to widen itself).
        refused = await http.post("/v1/organisations/org-a/apiKeys", headers=dashboard, json={"name": "wider"})
        assert refused.status_code == 403
        assert len((await http.get("/v1/organisations/org-a/apiKeys", headers=a)).json()) == 2

        # Another organisation can neither see nor revoke org-a's keys.
        b = await rig.org("org-b")
        assert (await http.get("/v1/organisations/org-a/apiKeys", headers=b)).status_code == 403
        assert (await http.delete(f"/v1/organisations/org-a/apiKeys/{body['id']}", headers=b)).status_code == 403
        assert (await http.delete(f"/v1/organisations/org-b/apiKeys/{body['id']}", headers=b)).status_code == 404
        assert (await http.get("/v1/installation/devices/m-1", headers=dashboard)).status_code == 200
        # org-b is not an administrator, whatever it asks for.
        assert (await http.get("/v1/admin/organisations", headers=b)).status_code == 403

        # Expiry: refused once the clock passes it.
        rig.clock.advance(3601)
        expired = await http.get("/v1/installation/devices/m-1", headers=dashboard)
        assert expired.status_code == 401 and "expired" in expired.json()["detail"]
        assert expired.headers["www-authenticate"].startswith("Bearer")

        # Revocation: refused from the next request on; the other keys still work.
        main_id = next(k["id"] for k in listed if k["name"] == "main")
        revoked = await http.delete(f"/v1/organisations/org-a/apiKeys/{main_id}", headers=rig.admin)
        assert revoked.status_code == 200 and revoked.json()["revokedAt"] is not None
        after = await http.get("/v1/installation/devices", headers=a)
        assert after.status_code == 401 and "revoked" in after.json()["detail"]
        assert (await http.get("/v1/organisations/org-b/apiKeys", headers=b)).status_code == 200

        # A wrong secret or a made-up key: 401, and nothing is revealed about which.
        forged = key(body["token"][:-4] + "AAAA")
        for headers in (forged, key("gw_0123456789abcdef.nope"), key("gw_nonsense")):
            answer = await http.get("/v1/installation/devices", headers=headers)
            assert answer.status_code == 401, headers


async def test_an_administrators_limited_key_administers_nothing(mosquitto: MosquittoServer,
                                                                 registry_url: str) -> None:
    async with platform(platform_settings(mosquitto, registry_url), registry_url) as rig:
        issued = await ApiKeys(rig.registry.engine).create(
            "ops", _spec(name="ops-monitoring", function_groups=[FunctionGroup.MONITORING]))
        limited = key(issued.token)
        before = [o["identification"] for o in (await rig.http.get("/v1/admin/organisations",
                                                                   headers=rig.admin)).json()]
        refused = await rig.http.post("/v1/admin/organisations", headers=limited,
                                      json={"identification": "sneaky", "name": "Sneaky"})
        assert refused.status_code == 403
        assert (await rig.http.get("/v1/deadLetters", headers=limited)).status_code == 403
        after = [o["identification"] for o in (await rig.http.get("/v1/admin/organisations",
                                                                  headers=rig.admin)).json()]
        assert after == before == ["ops"]
        past = await rig.http.post("/v1/organisations/ops/apiKeys", headers=rig.admin, json={
            "name": "late", "expiresAt": (rig.clock() - timedelta(seconds=1)).isoformat()})
        assert past.status_code == 422
        names = [k["name"] for k in (await rig.http.get("/v1/organisations/ops/apiKeys", headers=rig.admin)).json()]
        assert sorted(names) == ["admin init", "ops-monitoring"]


def _spec(**fields: object):  # noqa: ANN202 - the schema, imported where used
    from cloud.registry.apikeys import ApiKeyCreate

    return ApiKeyCreate(**fields)
