"""``gridwire admin init`` on both registry backends, and a key revoked through one API process
refused at once by another, both real ``gridwire cloud api`` processes on one PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cloud.migrations import migrate
from cloud.registry import OrganisationCreate, PlatformRole, Registry
from cloud.registry.apikeys import AlreadyBootstrapped, ApiKeys
from cloud.registry.models import ApiKey, Bootstrap
from gridwire.cli import app
from gridwire.cli_admin import ALREADY_BOOTSTRAPPED
from tests.fixtures.mosquitto import CLOUD, MosquittoServer
from tests.fixtures.procs import ManagedProcess, free_port

SECRET = "admin-test-secret-0123456789abcdefghij"


async def _snapshot(url: str) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, str]], list[int]]:
    """Every organisation, key and bootstrap row: what a refusal must leave as it was."""
    from sqlalchemy import select

    async with Registry(url=url) as registry, registry.engine.connect() as conn:
        orgs = [(o.identification, o.role.value, o.enabled) for o in await registry.list_organisations()]
        keys = [tuple(r) for r in (await conn.execute(select(ApiKey.id, ApiKey.name, ApiKey.secret_hash))).all()]
        marks = [r[0] for r in (await conn.execute(select(Bootstrap.id))).all()]
    return orgs, sorted(keys), marks


def test_admin_init_once_then_refuses_changing_nothing(registry_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["admin", "init", "--url", registry_url, "--org", "operator"])
    assert first.exit_code == 0, first.output
    token = first.stdout.strip()
    assert token.startswith("gw_") and "\n" not in token
    state = asyncio.run(_snapshot(registry_url))
    assert state[0] == [("operator", "ADMIN", True)] and len(state[1]) == 1 and state[2] == [1]

    async def holder() -> str:
        async with Registry(url=registry_url) as registry:
            found = await ApiKeys(registry.engine).verify(token)
        return f"{found.organisation.identification}:{found.scope}"

    assert asyncio.run(holder()) == "operator:None"  # the printed key authenticates, unlimited

    again = runner.invoke(app, ["admin", "init", "--url", registry_url, "--org", "someone-else"])
    assert again.exit_code == ALREADY_BOOTSTRAPPED
    assert "refused" in again.stderr and "nothing was changed" in again.stderr and again.stdout == ""
    assert asyncio.run(_snapshot(registry_url)) == state
    # compose runs it at every start: --exists-ok makes the refusal a success, still changing nothing.
    quiet = runner.invoke(app, ["admin", "init", "--url", registry_url, "--exists-ok"])
    assert quiet.exit_code == 0 and quiet.stdout == "" and "nothing was changed" in quiet.stderr
    assert asyncio.run(_snapshot(registry_url)) == state


def test_admin_init_refuses_a_registry_with_organisations(postgres_url: str) -> None:
    async def seed() -> None:
        await migrate(postgres_url)
        async with Registry(url=postgres_url) as registry:
            await registry.add_organisation(OrganisationCreate(identification="utility", name="Utility"))

    asyncio.run(seed())
    before = asyncio.run(_snapshot(postgres_url))
    refused = CliRunner().invoke(app, ["admin", "init", "--url", postgres_url])
    assert refused.exit_code == ALREADY_BOOTSTRAPPED and "1 organisation" in refused.stderr
    assert asyncio.run(_snapshot(postgres_url)) == before


async def test_two_bootstraps_at_once_make_one_administrator(postgres_url: str) -> None:
    await migrate(postgres_url)
    async with Registry(url=postgres_url) as one, Registry(url=postgres_url) as two:
        results = await asyncio.gather(ApiKeys(one.engine).bootstrap("op-1", "One"),
                                       ApiKeys(two.engine).bootstrap("op-2", "Two"), return_exceptions=True)
        refused = [r for r in results if isinstance(r, AlreadyBootstrapped)]
        assert len(refused) == 1, results
        organisations = await one.list_organisations()
    assert len(organisations) == 1 and organisations[0].role is PlatformRole.ADMIN


@pytest.fixture
def two_apis(mosquitto: MosquittoServer, postgres_url: str, tmp_path: Path):  # noqa: ANN201 - a generator fixture
    init = subprocess.run([sys.executable, "-m", "gridwire.cli", "admin", "init", "--url", postgres_url],
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    env = {"GRIDWIRE_JWT_SECRET": SECRET, "GRIDWIRE_DATABASE_URL": postgres_url,
           "GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
           "GRIDWIRE_MQTT_USERNAME": CLOUD.username, "GRIDWIRE_MQTT_PASSWORD": CLOUD.password,
           "GRIDWIRE_INFLUX_CREATE_DATABASE": "false", "GRIDWIRE_MIGRATE_ON_START": "false"}
    apis = []
    try:
        for n in (1, 2):
            port = free_port()
            # Plain HTTP, asked for explicitly: what is tested here is the keys, not TLS.
            api = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "api", "--port", str(port),
                                       "--insecure-http", "--log-level", "WARNING"], log=tmp_path / f"api-{n}.log", port=port, env=env)
            apis.append(api)
            api.start(timeout=60)
        yield init.stdout.strip(), [f"http://127.0.0.1:{a.port}" for a in apis]
    finally:
        for api in apis:
            api.stop()


def test_a_revoked_key_fails_at_once_in_every_api_process(two_apis: tuple[str, list[str]]) -> None:
    admin_token, (one, two) = two_apis
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(timeout=10) as http:
        made = http.post(f"{one}/v1/admin/organisations", headers=admin, json={"identification": "org-a", "name": "A"})
        assert made.status_code == 201, made.text
        issued = http.post(f"{one}/v1/organisations/org-a/apiKeys", headers=admin, json={"name": "app"}).json()
        app_key = {"Authorization": f"Bearer {issued['token']}"}
        for base in (one, two):
            assert http.get(f"{base}/v1/installation/devices", headers=app_key).status_code == 200

        revoked = http.delete(f"{two}/v1/organisations/org-a/apiKeys/{issued['id']}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revokedAt"]
        for base in (one, two):  # the very next request, on either process
            refused = http.get(f"{base}/v1/installation/devices", headers=app_key)
            assert refused.status_code == 401 and "revoked" in refused.json()["detail"], base
            assert http.get(f"{base}/v1/admin/organisations", headers=admin).status_code == 200
        listed = http.get(f"{one}/v1/organisations/org-a/apiKeys", headers=admin).json()
        assert [(k["id"], k["revokedAt"] is not None) for k in listed] == [(issued["id"], True)]
