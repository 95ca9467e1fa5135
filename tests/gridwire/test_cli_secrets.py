"""`gridwire secrets`: a new key (a file of mode 0600, never overwritten), and `reseal` sealing a
registry's clear secrets (device and webhook secrets) and rotating sealed ones to the ring's first
key, with no key refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from broker.sealing import KeyRing
from cloud.migrations import migrate
from cloud.registry import DeviceCreate, DeviceType, OrganisationCreate, Protocol, Registry, webhook_secrets
from cloud.registry.secrets import DeviceSecrets
from gridwire.cli import app


def test_new_key_writes_a_private_file_once(tmp_path: Path) -> None:
    out = tmp_path / "sealing.key"
    done = CliRunner().invoke(app, ["secrets", "new-key", "--id", "edge1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    key = out.read_text().strip()
    assert KeyRing.parse(key).key_ids == ["edge1"] and out.stat().st_mode & 0o777 == 0o600
    assert key.split(":")[1] not in done.output
    again = CliRunner().invoke(app, ["secrets", "new-key", "--out", str(out)])
    assert again.exit_code == 2 and "is never overwritten" in again.output and out.read_text().strip() == key
    assert CliRunner().invoke(app, ["secrets", "new-key", "--id", "bad id"]).exit_code == 2


def test_reseal_seals_clear_secrets_and_rotates_sealed_ones(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    old = CliRunner().invoke(app, ["secrets", "new-key", "--id", "old"]).output.strip()
    new = CliRunner().invoke(app, ["secrets", "new-key", "--id", "new"]).output.strip()

    async def prepare() -> None:
        await migrate(url)
        async with Registry(url=url) as registry:
            await registry.create_device(DeviceCreate(identification="E1", device_type=DeviceType.SMART_METER,
                                                      protocol=Protocol.DLMS))
            await DeviceSecrets(registry.engine, KeyRing.parse(old)).set("E1", "password", "pw-old-1")
            async with registry.engine.begin() as conn:
                await conn.execute(text("INSERT INTO device_secret (device_id, name, active, updated_at) "
                                        "SELECT id, 'authentication_key', :v, CURRENT_TIMESTAMP FROM device"),
                                   {"v": "00112233445566778899aabbccddeeff"})
        # A webhook secret sealed with the old key, and one an older release stored in clear.
        async with Registry(url=url, sealing=KeyRing.parse(old)) as registry:
            await registry.add_organisation(OrganisationCreate(identification="org-s", name="S",
                                                               webhook_secret="webhook-secret-sealed"))
            await registry.add_organisation(OrganisationCreate(identification="org-c", name="C"))
            async with registry.engine.begin() as conn:
                await conn.execute(text("UPDATE organisation SET webhook_secret = 'webhook-secret-in-clear' "
                                        "WHERE identification = 'org-c'"))

    async def values() -> list[str]:
        async with Registry(url=url) as registry, registry.engine.connect() as conn:
            return [row[0] for row in (await conn.execute(text("SELECT active FROM device_secret ORDER BY name")))]

    async def hooks() -> dict[str, str]:
        async with Registry(url=url) as registry, registry.engine.connect() as conn:
            rows = await conn.execute(text("SELECT identification, webhook_secret FROM organisation"))
            return {org: secret for org, secret in rows}

    asyncio.run(prepare())
    monkeypatch.delenv("GRIDWIRE_SECRETS_KEY", raising=False)
    refused = CliRunner().invoke(app, ["secrets", "reseal", "--url", url])
    assert refused.exit_code == 2 and "no sealing key" in refused.output
    key_file = tmp_path / "ring"
    key_file.write_text(f"{new}\n{old}\n")
    done = CliRunner().invoke(app, ["secrets", "reseal", "--url", url, "--key-file", str(key_file)])
    assert done.exit_code == 0, done.output
    assert "2 device secret value(s) and 2 webhook secret(s) sealed with key new" in done.output
    stored = asyncio.run(values())
    assert all(v.startswith("sealed:v1:new:") for v in stored)
    assert "00112233445566778899aabbccddeeff" not in "".join(stored) and "pw-old-1" not in "".join(stored)
    sealed = asyncio.run(hooks())
    assert all(v.startswith("sealed:v1:new:") for v in sealed.values()) and "clear" not in "".join(sealed.values())
    ring = KeyRing.parse(new)  # the old key is no longer needed
    assert {org: webhook_secrets.reveal(ring, org, v) for org, v in sealed.items()} == {
        "org-s": "webhook-secret-sealed", "org-c": "webhook-secret-in-clear"}
