"""Webhook secrets through the assembled platform: taken, stored sealed, never answered; refused
(409, nothing changed) with no sealing key; and the API and the domain process, which signs
deliveries, refuse to start while the registry holds one they cannot open, or one in clear."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from broker.sealing import SealingError, new_key
from cloud.api.process import create_platform_app
from cloud.domains.process import run_domain
from cloud.registry import OrganisationUpdate, Registry
from tests.cloud.api.platform_rig import platform
from tests.cloud.core.harness import serve
from tests.cloud.platform.test_platform import platform_settings
from tests.fixtures.mosquitto import MosquittoServer

KEY = new_key("k1")
SECRET = "webhook-secret-for-api-tests"
HOOKED = {"identification": "org-h", "name": "Hooked", "webhookUrl": "https://hooks.example.org/h",
          "webhookSecret": SECRET}


async def at_rest(registry: Registry) -> list[str | None]:
    async with registry.engine.connect() as conn:
        return list((await conn.execute(text("SELECT webhook_secret FROM organisation ORDER BY identification")))
                    .scalars())


async def test_webhook_secrets_are_sealed_through_the_api_and_refused_without_a_key(
        mosquitto: MosquittoServer, tmp_path: Path) -> None:
    # SQLite only: tests/cloud/registry/test_webhook_secrets.py runs the registry's part on both backends.
    registry_url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    async with platform(platform_settings(mosquitto, registry_url, secrets_key=KEY), registry_url) as rig:
        made = await rig.http.post("/v1/admin/organisations", headers=rig.admin, json=HOOKED)
        assert made.status_code == 201, made.text
        changed = await rig.http.patch("/v1/admin/organisations/org-h", headers=rig.admin,
                                       json={"webhookSecret": SECRET + "-2"})
        shown = await rig.http.get("/v1/admin/organisations/org-h", headers=rig.admin)
        for answer in (made, changed, shown):
            assert answer.json()["hasWebhookSecret"] is True and SECRET not in answer.text
        stored = [v for v in await at_rest(rig.registry) if v is not None]
        assert len(stored) == 1 and stored[0].startswith("sealed:v1:k1:") and SECRET not in stored[0]
        admin = rig.admin

    # Started with no key: the sealed secret already stored refuses the start.
    app = create_platform_app(platform_settings(mosquitto, registry_url))
    with pytest.raises(SealingError, match="holds 1 sealed webhook secret\\(s\\) but GRIDWIRE_SECRETS_KEY is not set"):
        async with app.router.lifespan_context(app):
            pass
    async with Registry(url=registry_url) as registry:  # cleared (needs no key), so it may start with none
        await registry.update_organisation("org-h", OrganisationUpdate(webhook_secret=None))
    async with serve(create_platform_app(platform_settings(mosquitto, registry_url)), lifespan="on") as base, \
            httpx.AsyncClient(base_url=base, headers=admin) as http:
        refused = await http.post("/v1/admin/organisations", json={**HOOKED, "identification": "org-n"})
        assert refused.status_code == 409 and "GRIDWIRE_SECRETS_KEY" in refused.json()["detail"]
        patched = await http.patch("/v1/admin/organisations/org-h", json={"name": "Renamed", "webhookSecret": SECRET})
        assert patched.status_code == 409 and SECRET not in patched.text
        listed = await http.get("/v1/admin/organisations")
        assert [(o["identification"], o["name"], o["hasWebhookSecret"]) for o in listed.json()] == [
            ("ops", "Platform operator", False), ("org-h", "Hooked", False)]


async def test_a_secret_in_clear_or_another_key_refuses_the_api_and_the_domain_process(
        mosquitto: MosquittoServer, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    async with platform(platform_settings(mosquitto, url, secrets_key=KEY), url) as rig:
        assert (await rig.http.post("/v1/admin/organisations", headers=rig.admin, json=HOOKED)).status_code == 201
    other = new_key("k1")  # another key under the same id
    for settings, reason in ((platform_settings(mosquitto, url), "GRIDWIRE_SECRETS_KEY is not set"),
                             (platform_settings(mosquitto, url, secrets_key=other), "does not open with key 'k1'")):
        app = create_platform_app(settings)
        with pytest.raises(SealingError, match=reason):
            async with app.router.lifespan_context(app):
                pass
        with pytest.raises(SealingError, match=reason):
            await asyncio.wait_for(run_domain(settings, asyncio.Event()), 30)
    # The domain process with the right key signs: it starts (and stops when told).
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(run_domain(platform_settings(mosquitto, url, secrets_key=KEY), stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    stop.set()
    await running

    async with Registry(url=url) as registry, registry.engine.begin() as conn:  # as an older release stored it
        await conn.execute(text("UPDATE organisation SET webhook_secret = :s WHERE identification = 'org-h'"),
                           {"s": SECRET})
    settings = platform_settings(mosquitto, url, secrets_key=KEY)
    app = create_platform_app(settings)
    with pytest.raises(SealingError, match="organisation:org-h:webhook_secret is in clear: run `gridwire secrets "
                                           "reseal`"):
        async with app.router.lifespan_context(app):
            pass
